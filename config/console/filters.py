"""List filters shown as one drop-down instead of a link per value.

Django lists every value of a filter as a link: the ninety-odd operation types made the
operations list 2,800 px tall. These filters render the same choices (same query strings, same
counts with *Show counts*) as a ``<select>`` (``admin/console/select_filter.html``), and
``static/console/select_filter.js`` (loaded by ``admin/base_site.html``; the
Content-Security-Policy allows no inline handler) opens the chosen one.
"""

from __future__ import annotations

from django.contrib import admin


class ChoicesDropdownFilter(admin.ChoicesFieldListFilter):
    """A field with ``choices`` (``Operation.operation_type``), as a drop-down."""

    template = "admin/console/select_filter.html"


class ValuesDropdownFilter(admin.AllValuesFieldListFilter):
    """A free-form field (a headless operation's type): its distinct values, as a drop-down."""

    template = "admin/console/select_filter.html"
