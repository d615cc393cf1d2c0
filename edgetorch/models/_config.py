"""Config dataclasses that read Hugging Face config.json files."""
import json
from dataclasses import fields


class FromHF:
    """from_dict / from_json taking the fields a dataclass knows and ignoring the rest."""

    @classmethod
    def from_dict(cls, d):
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))
