"""The console's date formats (``FORMAT_MODULE_PATH``): one way of writing a time on every page.

Django's English formats wrote "Dec. 7, 2026, 10:53 a.m." in the lists, beside the console's
own "2026-12-07 10:53:00 UTC" (``commands.admin.CONSOLE_TIME``) and the dashboard's
"2026-12-07 10:53": three formats on one page. These are the console's, for Django's too.
"""
