"""The top floor: the root URLconf, the console's dashboard and ``manage.py runstack``.

They import every app below (docs/architecture.md), so they live in a package of their own
above ``maintenance``, and ``config/`` stays plumbing that imports no app.
"""
