"""Chinese and English for the console: gettext catalogues, compiled when the console loads.

``locale/{zh,en}/LC_MESSAGES/messages.po`` are the only translation files (no ``.mo`` is committed):
:func:`load` reads each with Babel and compiles it in memory. Templates use Jinja2's i18n extension
(``{% trans %}``, ``_()``, new-style: ``_("%(n)s tickets", n=3)`` formats and escapes); Python code
marks strings with ``N_`` (:mod:`elderwatch.console.labels`) or calls ``_`` from the reader's
:class:`Language`.

English msgids are the source text; the English catalogue repeats them, so a missing English entry
is caught like a missing Chinese one (``tests/unit/test_console_i18n.py`` extracts every msgid from
the templates and the console's Python and checks both catalogues translate it).

To add or change text: edit the template or code, then ``python -m elderwatch.console.i18n`` adds
new msgids to both catalogues (English filled in, Chinese empty, flagged ``fuzzy``) and drops
unused ones; translate the Chinese ones and remove the flag.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"
TEMPLATES_DIR = HERE / "templates"
#: The console's languages, the default first.
LANGUAGES = ("zh", "en")
BABEL_LOCALES = {"zh": "zh_Hans_CN", "en": "en_GB"}
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


def read_catalogue(language: str) -> Catalog:
    with open(catalogue_path(language), "rb") as handle:
        return read_po(handle, locale=BABEL_LOCALES[language])


def compile_catalogue(catalog: Catalog) -> gettext.GNUTranslations:
    """The catalogue as gettext translations, compiled in memory (fuzzy entries left out, as msgfmt does)."""
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@dataclass(frozen=True)
class Language:
    code: str
    translations: gettext.GNUTranslations
    env: jinja2.Environment

    @property
    def locale(self) -> Locale:
        return Locale.parse(BABEL_LOCALES[self.code])

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def when(self, moment: datetime | None, zone: str | None = None, *, date_only: bool = False) -> str:
        """A time as the reader writes it, in the household's zone (UTC without one)."""
        if moment is None:
            return ""
        tz = ZoneInfo(zone or "UTC")
        pattern = "yyyy-MM-dd" if date_only else ("M月d日 EEE HH:mm" if self.code == "zh" else "EEE d MMM HH:mm")
        return format_datetime(moment, pattern, tzinfo=tz, locale=BABEL_LOCALES[self.code])

    def number(self, value: float | None) -> str:
        """A reading for people: 156 L, 51.3 L, 1.98 kWh."""
        if value is None:
            return "-"
        pattern = "#,##0" if abs(value) >= 100 else ("#,##0.#" if abs(value) >= 10 else "#,##0.##")
        return format_decimal(value, pattern, locale=BABEL_LOCALES[self.code])

    def duration(self, delta: timedelta) -> str:
        """``2 h 5 min``, ``3 d 4 h`` (in the reader's words), never negative."""
        _ = self.gettext
        minutes = max(int(delta.total_seconds() // 60), 0)
        days, rest = divmod(minutes, 24 * 60)
        hours, minutes = divmod(rest, 60)
        if days:
            return _("%(d)s d %(h)s h") % {"d": days, "h": hours}
        if hours:
            return _("%(h)s h %(m)s min") % {"h": hours, "m": minutes}
        return _("%(m)s min") % {"m": minutes} if minutes else _("less than a minute")


def environment(translations: gettext.GNUTranslations) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.i18n"],
                             trim_blocks=True, lstrip_blocks=True)
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations, newstyle=True)
    return env


def load() -> dict[str, Language]:
    """Every language of the console, its catalogue compiled and its templates' environment ready."""
    languages = {}
    for code in LANGUAGES:
        translations = compile_catalogue(read_catalogue(code))
        languages[code] = Language(code=code, translations=translations, env=environment(translations))
    return languages


# -- extraction (the completeness test and the catalogue update) ---------------------------------

METHOD_MAP = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS_MAP = {"templates/**.html": {"trimmed": "true", "extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extract() -> dict[str, list[str]]:
    """Every msgid the console uses -> where (``file:line``), from its templates and Python modules."""
    from babel.messages.extract import extract_from_dir

    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(HERE), METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS, strip_comment_tags=True):
        for msgid in (message if isinstance(message, tuple) else (message,)):
            if msgid:
                found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def update_catalogues() -> dict[str, tuple[int, int]]:
    """Bring both catalogues in line with the sources; returns language -> (added, removed)."""
    used = extract()
    changes = {}
    for code in LANGUAGES:
        catalog = read_catalogue(code)
        present = {m.id for m in catalog if m.id}
        added = removed = 0
        for msgid in sorted(present - set(used)):
            del catalog[msgid]
            removed += 1
        for msgid in sorted(set(used) - present):
            catalog.add(msgid, msgid if code == "en" else "", flags=() if code == "en" else ("fuzzy",))
            added += 1
        with open(catalogue_path(code), "wb") as handle:  # no locations: line numbers would churn every diff
            write_po(handle, catalog, width=100, sort_output=True, no_location=True)
        changes[code] = (added, removed)
    return changes


if __name__ == "__main__":
    for language, (added, removed) in update_catalogues().items():
        print(f"{catalogue_path(language).relative_to(HERE)}: {added} added, {removed} removed")
