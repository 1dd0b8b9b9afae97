"""The console's sidebar and index arranged by the operator's tasks, not by Python package.

Django lists each app's models under the app's name: the sidebar led with Axes' access logs
and Django's users and groups, and an operator's operations sat between "Commands" and
"Django Celery Beat". The sections are data (:class:`Section`, :class:`Link`) that the top
floor writes (``server.navigation``, named by ``CONSOLE_NAVIGATION``: this plumbing imports
no app); :func:`arrange` lays Django's own app list out by them. A link is shown only when
Django's list has its model (the user may see it), so permissions and tenant scoping stay
Django's and ``inventory.scoping``'s. Models no section names end in :data:`ADVANCED`, last
(the libraries' and Django's own tables, superusers only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

#: The section that takes every model the sections do not name.
ADVANCED = "Advanced"


@dataclass(frozen=True)
class Link:
    """One line of a section: a model's list (``app_label.ModelName``), optionally filtered
    (``query``), or another page (``url``, a URL name) shown when the model is visible."""

    name: str
    model: str
    query: str = ""
    url: str = ""
    #: Offer the model's "Add" link on this line.
    add: bool = False


@dataclass(frozen=True)
class Section:
    name: str
    links: tuple[Link, ...]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def arrange(
    app_list: list[dict[str, Any]], sections: tuple[Section, ...], here: str = ""
) -> list[dict[str, Any]]:
    """Django's app list (what this user may see) laid out as ``sections``, then the rest; the
    line for ``here`` (the request's path and query) marked ``current``."""
    models = {
        f"{app['app_label']}.{model['object_name']}": model for app in app_list for model in app["models"]
    }
    named: set[str] = set()
    arranged: list[dict[str, Any]] = []
    for section in sections:
        entries = []
        for link in section.links:
            named.add(link.model)
            model = models.get(link.model)
            if model is None:
                continue
            url = (
                reverse(link.url)
                if link.url
                else (model["admin_url"] or "") + (f"?{link.query}" if link.query else "")
            )
            entries.append(
                {
                    **model,
                    "name": link.name,
                    "object_name": _slug(link.name),
                    "admin_url": url,
                    "add_url": model["add_url"] if link.add else None,
                    "view_only": True if link.url or link.query else model["view_only"],
                }
            )
        if entries:
            arranged.append(_section(section.name, entries))
    rest = [
        {**model, "name": f"{model['name']} ({app['name']})"}
        for app in app_list
        for model in app["models"]
        if f"{app['app_label']}.{model['object_name']}" not in named
    ]
    if rest:
        arranged.append(_section(ADVANCED, rest))
    _mark_current(arranged, here)
    return arranged


def _mark_current(arranged: list[dict[str, Any]], here: str) -> None:
    """The line whose link is the longest prefix of ``here``, a filtered list's only on its
    own query. Django marks every line whose link is in the path: "All operations" was lit on
    each filtered list and on Failing now."""
    path, _, query = here.partition("?")
    best: tuple[int, int] = (0, 0)
    chosen: tuple[dict[str, Any], dict[str, Any]] | None = None
    for section in arranged:
        section["current"] = False
        for entry in section["models"]:
            entry["current"] = False
            link_path, _, link_query = str(entry["admin_url"] or "").partition("?")
            if not link_path or not path.startswith(link_path):
                continue
            if link_query and link_query not in query.split("&"):
                continue
            score = (len(link_path), 1 if link_query else 0)
            if score > best:
                best, chosen = score, (section, entry)
    if chosen is not None:
        chosen[0]["current"] = chosen[1]["current"] = True


def _section(name: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "app_label": _slug(name),
        "app_url": entries[0]["admin_url"],
        "has_module_perms": True,
        "models": entries,
    }
