"""T5's tokenizer read straight from the base model's `tokenizer/spiece.model` with sentencepiece.

The released CogVideoX folders ship the tokenizer in its SentencePiece form only (no
`tokenizer.json`). transformers would convert it through sentencepiece's protobuf module, which
needs a newer protobuf than mediapipe allows (`protobuf<5`), and the load ends in "tiktoken is
required". The official code tokenizes with the slow `T5Tokenizer`; this gives its ids: the pieces
of the text between special tokens, `</s>` last (kept inside `max_length`), `<pad>` after it, and
the `<extra_id_N>` sentinels numbered down from the top of the vocabulary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dwm_data.errors import DwmDataError
from dwm_data.extras import require

MODEL_FILE = "spiece.model"
CONFIG_FILE = "tokenizer_config.json"
SPIECE_UNDERLINE = "\u2581"


class T5Tokenizer:
    """Prompt text to T5 token ids, as transformers' slow `T5Tokenizer` with `padding="max_length"`,
    `truncation=True` and the special tokens added."""

    def __init__(self, folder: Path):
        spm = require("sentencepiece", "train")
        model = folder / MODEL_FILE
        if not model.is_file():
            raise DwmDataError(f"T5 tokenizer model {model} not found")
        config_file = folder / CONFIG_FILE
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        # transformers 4 reads a missing or null `legacy` as True (with a warning): the same here.
        self.legacy = config.get("legacy") is not False
        self.add_prefix_space = config.get("add_prefix_space", True) is not False
        proto = model.read_bytes()
        if not self.legacy:
            proto = _without_dummy_prefix(proto)
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self.unk_token = _content(config.get("unk_token", "<unk>"))
        self.specials = self._special_ids(config)
        self.strips = _strips(config, self.specials)
        self._underline = self.sp.piece_to_id(SPIECE_UNDERLINE)
        self.eos_id = self.specials[_content(config.get("eos_token", "</s>"))]
        self.pad_id = self.specials[_content(config.get("pad_token", "<pad>"))]
        ordered = sorted(self.specials, key=len, reverse=True)  # longest match first, as the trie
        self._split = re.compile("(" + "|".join(map(re.escape, ordered)) + ")")

    def _special_ids(self, config: dict) -> dict[str, int]:
        """pad, eos and unk are pieces of the model; the sentinels sit above it, `<extra_id_0>`
        highest (T5's span-corruption convention)."""
        ids = {}
        for key, default in (("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>")):
            token = _content(config.get(key, default))
            index = self.sp.piece_to_id(token)
            if index == self.sp.unk_id() and token != self.unk_token:
                raise DwmDataError(f"T5 tokenizer: {key} {token!r} is not a piece of {MODEL_FILE}")
            ids[token] = index
        extra = int(config.get("extra_ids", 100))
        size = self.sp.get_piece_size()
        for n in range(extra):
            ids[f"<extra_id_{n}>"] = size - 1 + extra - n
        return ids

    def ids(self, text: str) -> list[int]:
        """Token ids of one text, without `</s>` and padding."""
        if not self.legacy and text:
            text = text.replace(SPIECE_UNDERLINE, " ")
            if self.add_prefix_space:
                text = SPIECE_UNDERLINE + text
        chunks = self._split.split(text)  # text, special, text, special, ..., text
        for i in range(1, len(chunks), 2):
            lstrip, rstrip = self.strips[chunks[i]]
            if lstrip:
                chunks[i - 1] = chunks[i - 1].rstrip()
            if rstrip:
                chunks[i + 1] = chunks[i + 1].lstrip()
        pieces = [[self.specials[c]] if i % 2 else self._pieces(c) for i, c in enumerate(chunks)]
        # the non-legacy prefix leaves a lone "▁" before a leading special token: dropped
        if not self.legacy and len(chunks) > 1 and pieces[0] == [self._underline]:
            pieces[0] = []
        return [index for part in pieces for index in part]

    def _pieces(self, chunk: str) -> list[int]:
        if not chunk:
            return []
        if self.legacy or not chunk.startswith((SPIECE_UNDERLINE, " ")):
            return self.sp.encode(chunk)
        # Without the dummy prefix sentencepiece would drop the leading "▁"; encode behind the
        # unknown token's text and cut its pieces off again (what transformers 4 does).
        skip = len(self.sp.encode(self.unk_token))
        pieces = self.sp.encode(self.unk_token + chunk)
        return pieces[skip:] if len(pieces) >= skip else pieces

    def __call__(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Ids padded to `max_length`: the text truncated to leave room for `</s>`, which is not
        added twice when the text already ends in it (as `T5Tokenizer` does)."""
        rows = []
        for text in texts:
            ids = self.ids(text)[: max_length - 1]
            if not ids or ids[-1] != self.eos_id:
                ids.append(self.eos_id)
            rows.append(ids + [self.pad_id] * (max_length - len(ids)))
        return rows


def _content(token) -> str:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return token["content"] if isinstance(token, dict) else str(token)


def _strips(config: dict, specials: dict[str, int]) -> dict[str, tuple[bool, bool]]:
    """Whether each special token eats the whitespace on its left and right: as the config's
    `added_tokens_decoder` says, else transformers 4's defaults (sentinels strip, others do not)."""
    saved = {
        entry["content"]: (bool(entry.get("lstrip")), bool(entry.get("rstrip")))
        for entry in config.get("added_tokens_decoder", {}).values()
    }
    default = {token: (token.startswith("<extra_id_"),) * 2 for token in specials}
    return {token: saved.get(token, default[token]) for token in specials}


def _without_dummy_prefix(proto: bytes) -> bytes:
    """The model with `add_dummy_prefix` off, as transformers 4 loads it for `legacy=False`.
    transformers' own copy of the protobuf schema works with protobuf 4 (sentencepiece's does not)."""
    from transformers.utils import sentencepiece_model_pb2_new as model_pb2

    model = model_pb2.ModelProto.FromString(proto)
    model.normalizer_spec.add_dummy_prefix = False
    return model.SerializeToString()
