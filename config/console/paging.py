"""The console's paginator for lists of millions of rows (devices, command statuses).

Django's change list counts the filtered rows on every page, even with
``show_full_result_count = False``: an exact ``COUNT(*)`` of a million devices was most of
the device list's 241 ms (bench/lists.py, issue 17). Beyond ``COUNT_ESTIMATE_THRESHOLD`` rows
the count is the planner's estimate, and the page says "about" (templates/admin/pagination.html).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

from config.api.pagination import estimated_rows


class EstimatedCountPaginator(Paginator):
    estimated = False

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        rows: Any = self.object_list
        if isinstance(rows, QuerySet):
            estimate = estimated_rows(rows)
            if estimate > int(settings.COUNT_ESTIMATE_THRESHOLD):
                self.estimated = True
                return estimate
        return int(super().count)
