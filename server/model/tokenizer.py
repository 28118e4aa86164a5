"""The built-in tiny model's CLIP tokenizer: a small byte-level BPE vocabulary laid out like CLIP's,
written as tokenizer files (so the model runs offline and saves like any diffusers model)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

# Words the tiny tokenizer knows whole; everything else falls back to single characters.
_TINY_WORDS = """a an the of in on at with and or by for to from style drawing painting photo
photograph portrait picture image sketch render illustration oil watercolor pencil ink digital
art artist cinematic lighting light dark night day sunset sunrise morning evening city street
forest mountain mountains river lake sea ocean beach sky clouds cloud rain snow fire water stone
castle house room window garden flower flowers tree trees field desert island space planet moon
star stars galaxy robot cat cats dog dogs whippet fox wolf bird owl horse fish dragon monster man
woman girl boy child face eyes hair old young red orange yellow green blue purple pink black white
gold golden silver grey gray bright colorful neon glowing sleeping running sitting standing flying
very highly detailed high quality beautiful cute small large big tiny giant vintage modern
futuristic ancient abstract surreal fantasy sci fi cyberpunk steampunk minimalist photorealistic
realistic studio close up wide angle lens macro 4k 8k hd van gogh monet picasso hokusai""".split()


def _bytes_to_unicode() -> dict[int, str]:
    # The byte ↔ printable-character table of GPT-2/CLIP byte-level BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A small CLIP BPE vocabulary laid out like the real one: bytes, bytes + `</w>`, merges for a
    built-in word list, then the start/end tokens last (so EOS has the highest id, as in CLIP)."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    # A few rounds of real BPE training on the word list (most frequent pair first, ties broken
    # by the pair itself), so merges are consistent and every listed word ends up one token.
    words = [list(w[:-1]) + [w[-1] + "</w>"] for w in dict.fromkeys(_TINY_WORDS)]
    merges: list[str] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for w in words:
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(f"{best[0]} {best[1]}")
        tokens.append(best[0] + best[1])
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i : i + 2] = [w[i] + w[i + 1]]
                i += 1
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tiny_tokenizer(directory: Path, pad_token: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab_and_merges()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def tiny_tokenizers(vocab_size_hint: list[int]) -> tuple[Any, Any]:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="sdxl-breeder-tok-") as tmp:
        write_tiny_tokenizer(Path(tmp) / "t1", pad_token="<|endoftext|>")
        # SDXL's second tokenizer pads with "!" rather than the end token.
        write_tiny_tokenizer(Path(tmp) / "t2", pad_token="!")
        tok1 = CLIPTokenizer.from_pretrained(Path(tmp) / "t1")
        tok2 = CLIPTokenizer.from_pretrained(Path(tmp) / "t2")
    vocab_size_hint.append(len(tok1))
    return tok1, tok2
