"""Text pools for the offline demo corpus, as data: text.json beside this module (written for this project;
only the Bitext intent and category names are reused). Loaded once on import.

    INTENTS[intent] -> (category, request fragments, verb phrase, thing, site section)
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT_FILE = Path(__file__).with_name("text.json")
_POOLS = json.loads(TEXT_FILE.read_text(encoding="utf-8"))

INTENTS: dict[str, tuple[str, list[str], str, str, str]] = {
    name: (i["category"], i["requests"], i["verb"], i["thing"], i["section"]) for name, i in _POOLS["INTENTS"].items()
}
GREETINGS: list[str] = _POOLS["GREETINGS"]
FRAMES: list[str] = _POOLS["FRAMES"]
TAILS: list[str] = _POOLS["TAILS"]
OPENERS: list[str] = _POOLS["OPENERS"]
STEPS: list[str] = _POOLS["STEPS"]
DETAILS: list[str] = _POOLS["DETAILS"]
CLOSINGS: list[str] = _POOLS["CLOSINGS"]
NAMES: list[str] = _POOLS["NAMES"]
ADJECTIVES: list[str] = _POOLS["ADJECTIVES"]
PRODUCTS: list[str] = _POOLS["PRODUCTS"]
CITIES: list[str] = _POOLS["CITIES"]
TIERS: list[str] = _POOLS["TIERS"]
MONTHS: list[str] = _POOLS["MONTHS"]
FRENCH_ASKS: list[str] = _POOLS["FRENCH_ASKS"]
FRENCH_REPLIES: list[str] = _POOLS["FRENCH_REPLIES"]
CHINESE_ASKS: list[str] = _POOLS["CHINESE_ASKS"]
CHINESE_REPLIES: list[str] = _POOLS["CHINESE_REPLIES"]
SHORT_ASKS: list[str] = _POOLS["SHORT_ASKS"]
SHORT_REPLIES: list[str] = _POOLS["SHORT_REPLIES"]
