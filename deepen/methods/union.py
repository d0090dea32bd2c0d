"""The union of the members' vocabularies, keyed by the text a token stands for (GaC, UniTE).

Tokens are matched by the bytes they decode to (``deepen.vocabulary``: byte-level BPE symbols decoded, SentencePiece
'▁' -> space, '<0xNN>' -> that byte), the rule the anchors use, not by their spelling in the vocabulary (GaC's string
rule misses newlines, bytes and every non-ASCII byte-level token). Entries come in a fixed order: the main model's
texts in its token order, then each other member's new texts in its token order, then one entry for end-of-sequence;
so ties (``argmax``: the first) go to the main model's tokens, deterministically. Each member's tokens map to entries
through an index map [|V_i|] (sparse: never a |V_i| x |U| matrix); a text two tokens of one member stand for (Gemma's
'\\n' and '<0x0A>') gets both tokens' probability.
"""

from __future__ import annotations

import torch

from deepen.vocabulary import Vocabulary, normalise_vocabulary, text_to_id


class UnionVocabulary:
    """Union of ``members``' vocabularies (the first ``sizes[i]`` tokens of each; main model first).

    Attributes:
        texts: the bytes of each entry (the last entry, end-of-sequence, has b"").
        eos: the end-of-sequence entry.
        index: per member, [|V_i|] long: each token's entry (-1: a special token that does not end a sequence).
        back: per member, [U] long: the member's token for each entry's text (its EOS for ``eos``), -1 if none.
    """

    def __init__(self, members, sizes: list[int]):
        vocabs = [normalise_vocabulary(m.tokenizer, n) for m, n in zip(members, sizes)]
        entry: dict[bytes, int] = {}
        for v in vocabs:
            for text, kind in zip(v.texts, v.kinds):
                if kind != "special" and text and text not in entry:
                    entry[text] = len(entry)
        self.eos = len(entry)
        self.texts = [*entry, b""]
        self.index = [self._index(v, m.eos_ids, entry) for m, v in zip(members, vocabs)]
        self.back = [self._back(v, m.eos_ids, entry) for m, v in zip(members, vocabs)]
        self.text_to_id = [text_to_id(v) for v in vocabs]

    def __len__(self) -> int:
        return len(self.texts)

    def _index(self, vocab: Vocabulary, eos_ids, entry: dict[bytes, int]) -> torch.Tensor:
        index = torch.tensor([entry[t] if k != "special" and t else -1 for t, k in zip(vocab.texts, vocab.kinds)],
                             dtype=torch.long)
        for e in eos_ids:
            if e < len(index):
                index[e] = self.eos
        return index

    def _back(self, vocab: Vocabulary, eos_ids, entry: dict[bytes, int]) -> torch.Tensor:
        back = torch.full((len(entry) + 1,), -1, dtype=torch.long)
        for text, token in text_to_id(vocab).items():
            back[entry[text]] = token
        back[self.eos] = min(eos_ids) if eos_ids else -1
        return back

    def distribution(self, i: int, probs: torch.Tensor) -> torch.Tensor:
        """Member i's next-token distribution [B, |V_i|] on the union [B, U] (probabilities of tokens sharing a text
        add up; special tokens that do not end a sequence drop out)."""
        index = self.index[i].to(probs.device)
        valid = index >= 0
        out = torch.zeros(len(probs), len(self), dtype=probs.dtype, device=probs.device)
        return out.index_add_(1, index[valid], probs[:, valid])
