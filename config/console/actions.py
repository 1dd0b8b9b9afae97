"""The console's actions take only keys their model can hold.

Django's admin filters ``pk__in=<the posted _selected_action values>`` as posted: a value the
key's field cannot take (``abc`` for an integer key, a NUL byte, a number past bigint) raises
in the query and answers 500. A browser never sends one, a hand-made POST may; the operator
gets Django's own "No items have been changed" redirect with the value named instead.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.http.response import HttpResponseBase


def key_problem(field: models.Field[Any, Any], value: str) -> str | None:
    """Why ``value`` cannot be a key of ``field`` (None when it can)."""
    if "\x00" in value:
        return "holds a NUL character"
    try:
        key = field.to_python(value)
    except (ValidationError, ValueError, TypeError):
        return "is not a valid key"
    if key is None or key == "":
        return "is empty"
    if isinstance(key, int):
        low, high = connection.ops.integer_field_range(field.get_internal_type())
        if (low is not None and key < low) or (high is not None and key > high):
            return "is out of range"
    return None


class ActionKeysChecked(admin.ModelAdmin):
    """Mixed into the project's two admin bases (``inventory.scoping``), so every screen has it."""

    def response_action(  # type: ignore[override]  # the stubs add Django 6's action_location
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponseBase | None:
        field = self.model._meta.pk
        assert field is not None
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            problem = key_problem(field, value)
            if problem is not None:
                shown = repr(value[:40])
                message = f"Selected item {shown} {problem}. No items have been changed."
                self.message_user(request, message, messages.ERROR)
                return None  # the changelist redirects back to itself, as for "nothing selected"
        return super().response_action(request, queryset)
