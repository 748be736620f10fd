"""The console's Chinese and English catalogues: every message the templates and code use is translated.

Msgids are extracted with Babel's extractors (Jinja2's for the templates, Python's for the code,
``N_`` included), exactly as ``python -m elderwatch.console.i18n`` does to update the catalogues.
"""

from __future__ import annotations

import re

import pytest

from elderwatch.console import labels
from elderwatch.console.i18n import LANGUAGES, extract, load, read_catalogue

USED = extract()
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def test_extraction_finds_templates_and_code():
    sources = {where.split(":")[0].rsplit("/", 1)[-1] for places in USED.values() for where in places}
    assert {"ticket.html", "_ticket_list.html", "signin.html", "labels.py", "web.py"} <= sources
    assert "I'll take it: I will go or call" in USED and labels.KINDS["inactivity"] in USED


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_msgid_has_a_translation(language):
    catalogue = read_catalogue(language)
    translated = {m.id: m.string for m in catalogue if m.id and m.string and not m.fuzzy}
    missing = sorted(set(USED) - set(translated))
    assert not missing, f"{language}: untranslated (run python -m elderwatch.console.i18n, then translate): {missing}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_their_placeholders(language):
    for message in read_catalogue(language):
        if message.id and message.string:
            assert sorted(PLACEHOLDER.findall(message.id)) == sorted(PLACEHOLDER.findall(message.string)), message.id


def test_no_catalogue_keeps_unused_messages():
    for language in LANGUAGES:
        unused = sorted({m.id for m in read_catalogue(language) if m.id} - set(USED))
        assert not unused, f"{language}: no longer used (python -m elderwatch.console.i18n drops them): {unused}"


def test_compiled_catalogues_translate_and_render():
    languages = load()
    zh, en = languages["zh"], languages["en"]
    assert zh.gettext("My tickets") == "我的工单" and en.gettext("My tickets") == "My tickets"
    assert zh.gettext(labels.STATES["accepted"]) == "已接单"
    assert all("\u4e00" <= ch <= "\u9fff" for ch in zh.gettext(labels.KINDS["inactivity"]))
    # every state, kind, outcome and event has a Chinese word
    for mapping in (labels.STATES, labels.KINDS, labels.OUTCOMES, labels.EVENTS, labels.SEVERITIES):
        for text in mapping.values():
            assert zh.gettext(text) != text, text


def test_durations_and_numbers_in_each_language():
    from datetime import timedelta

    languages = load()
    assert languages["zh"].duration(timedelta(hours=2, minutes=5)) == "2小时5分钟"
    assert languages["en"].duration(timedelta(days=1, hours=3)) == "1 d 3 h"
    assert languages["en"].duration(timedelta(seconds=20)) == "less than a minute"
    assert languages["en"].number(156.013) == "156" and languages["en"].number(1.984) == "1.98"
    assert languages["zh"].number(1234.5) == "1,234"
