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


def random_name() -> str:
    a, b = os.urandom(2)
    return f"{_LEFT[a % len(_LEFT)]}_{_RIGHT[b % len(_RIGHT)]}"
