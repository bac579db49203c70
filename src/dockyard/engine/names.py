"""Random container names in Docker's adjective_surname style."""

from __future__ import annotations

import secrets

__all__ = ["random_name"]

_LEFT = ("admiring", "bold", "brave", "clever", "cool", "eager", "elated", "focused", "gallant",
         "happy", "jolly", "keen", "loving", "modest", "nifty", "quirky", "serene", "sharp",
         "stoic", "tender", "upbeat", "vibrant", "wizardly", "zealous")  # fmt: skip
_RIGHT = ("archimedes", "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper",
          "hypatia", "kepler", "lamarr", "lovelace", "meitner", "newton", "noether", "pasteur",
          "ritchie", "shannon", "tesla", "thompson", "turing", "wozniak", "yonath", "zuse")  # fmt: skip


def random_name() -> str:
    return f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
