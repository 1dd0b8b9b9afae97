"""Device files: CSV with a header row, or JSON lines; read by ``import_devices`` and the console.

Reading only turns the file into row dicts; every row is then validated by
``inventory.services.validate_device_rows``, exactly as the API validates a bulk import.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any, TextIO

from config.api.parsers import JSONRefused, loads

LIST_FIELDS = ("tags", "groups")


class DeviceFileError(ValueError):
    """The file itself cannot be read (not its rows' values, which the validation reports)."""


def read_rows(handle: TextIO) -> Iterator[Any]:
    """Rows as dicts. CSV list columns (tags, groups) separate items with ``;``.

    A file whose first line starts with ``{`` is JSON lines; anything else is CSV.
    """
    first = handle.readline()
    handle.seek(0)
    if first.lstrip().startswith("{"):
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield loads(line)  # the API's limits: nesting, non-finite numbers, surrogates
                except JSONRefused as refused:
                    problem = (
                        f"not valid JSON ({refused.reason})"
                        if refused.where is None
                        else f"{refused.field('row')}: {refused.reason}"
                    )
                    raise DeviceFileError(f"line {number}: {problem}") from None
        return
    try:
        for row in csv.DictReader(handle):
            record: dict[str, Any] = {
                k.strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items() if k
            }
            for name in LIST_FIELDS:
                if name in record:
                    record[name] = [item.strip() for item in record[name].split(";") if item.strip()]
            for name, value in list(record.items()):
                if value == "" and name not in LIST_FIELDS:
                    del record[name]
            yield record
    except csv.Error as error:
        raise DeviceFileError(f"not a readable CSV file ({error})") from None
