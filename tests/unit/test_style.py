"""The stylesheet's colours meet WCAG 2.2 AA in both schemes; so does any accepted accent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecar.branding import (
    DARK_BACKGROUNDS,
    LIGHT_BACKGROUNDS,
    MIN_TEXT_CONTRAST,
    MIN_UI_CONTRAST,
    accent_problem,
    brand_css,
    contrast,
    for_dark_scheme,
    text_on,
)

CSS = Path(__file__).resolve().parents[2] / "templates" / "static" / "style.css"
#: (foreground, background, minimum): text 4.5:1; borders of inputs/buttons and focus 3:1.
PAIRS = [
    ("text", "bg", 4.5), ("text", "card", 4.5), ("muted", "card", 4.5), ("muted", "bg", 4.5),
    ("accent", "card", 4.5), ("accent", "bg", 4.5), ("accent-text", "accent", 4.5),
    ("danger", "card", 4.5), ("danger", "err-bg", 4.5), ("text", "err-bg", 4.5),
    ("ok", "ok-bg", 4.5), ("warn", "warn-bg", 4.5), ("accent", "warn-bg", 4.5),
    ("muted", "card", 3.0),  # input and button borders
    ("focus", "card", 3.0), ("focus", "bg", 3.0),  # the focus ring sits on the background
]


def schemes() -> dict[str, dict[str, str]]:
    text = CSS.read_text(encoding="utf-8")
    light = re.search(r"^:root\s*{(.*?)}", text, re.S | re.M)
    dark = re.search(r"prefers-color-scheme:\s*dark\)\s*{\s*:root\s*{(.*?)}", text, re.S)
    assert light and dark
    return {name: dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block.group(1)))
            for name, block in (("light", light), ("dark", dark))}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_stylesheet_colours_have_enough_contrast(scheme: str) -> None:
    colours = schemes()[scheme]
    failures = [f"--{fg} on --{bg}: {contrast(colours[fg], colours[bg]):.2f} < {minimum}"
                for fg, bg, minimum in PAIRS if contrast(colours[fg], colours[bg]) < minimum]
    assert not failures, failures


def test_the_stylesheet_has_no_generated_text_and_a_visible_focus() -> None:
    text = CSS.read_text(encoding="utf-8")
    assert not re.search(r"(?<![\w-])content:", text)  # "Error:" is real, translated text
    assert ":focus-visible" in text and "outline: 3px solid var(--focus)" in text
    assert "prefers-color-scheme: dark" in text and "@media print" in text


def test_contrast_formula() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#ffffff", "#ffffff") == 1


@pytest.mark.parametrize("accent", ["#1d4ed8", "#0b5cad", "#b42318", "#116329", "#5b21b6",
                                    "#000000", "#595959", "#0f766e"])
def test_an_accepted_accent_reads_well_in_both_schemes(accent: str) -> None:
    assert accent_problem(accent) is None
    for bg in LIGHT_BACKGROUNDS:
        assert contrast(accent, bg) >= MIN_TEXT_CONTRAST
    assert contrast(text_on(accent), accent) >= MIN_TEXT_CONTRAST
    dark = for_dark_scheme(accent)
    for bg in DARK_BACKGROUNDS:
        assert contrast(dark, bg) >= MIN_TEXT_CONTRAST
        assert contrast(dark, bg) >= MIN_UI_CONTRAST
    assert contrast(text_on(dark), dark) >= MIN_TEXT_CONTRAST
    css = brand_css(accent)
    assert f"--accent: {accent};" in css and f"--accent: {dark};" in css


@pytest.mark.parametrize(("accent", "why"), [
    ("#ffcc00", "contrast"), ("#8ab4ff", "contrast"), ("#777777", "contrast"),
    ("blue", "#rrggbb"), ("#12345", "#rrggbb"), ("#1d4ed8; x", "#rrggbb"),
])
def test_a_bad_accent_is_refused(accent: str, why: str) -> None:
    problem = accent_problem(accent)
    assert problem is not None and why in problem
