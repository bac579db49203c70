"""Random container names in Docker's adjective_surname style."""

from __future__ import annotations

import os

__all__ = ["random_name"]

_LEFT = ("admiring", "bold", "brave", "clever", "cool", "eager", "elated", "focused", "gallant",
         "happy", "jolly", "keen", "loving", "modest", "nifty", "quirky", "serene", "sharp",
         "stoic", "tender", "upbeat", "vibrant", "wizardly", "zealous")  # fmt: skip
_RIGHT = ("archimedes", "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper",
          "hypatia", "kepler", "lamarr", "lovelace", "meitner", "newton", "noether", "pasteur",
          "ritchie", "shannon", "tesla", "thompson", "turing", "wozniak", "yonath", "zuse")  # fmt: skip


def random_name(attempt: int = 0) -> str:
    """A name; from the second attempt on with a number appended, as Docker does, so that
    a host with more containers than combinations still gets one."""
    a, b, n = os.urandom(3)
    suffix = str(n % (10 * attempt)) if attempt else ""
    return f"{_LEFT[a % len(_LEFT)]}_{_RIGHT[b % len(_RIGHT)]}{suffix}"
