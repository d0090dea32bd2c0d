"""The peer methods (deepen.methods: GaC, UniTE, SAFE) on the synthetic pair: their arithmetic on hand-built
distributions, and their behaviour in the decoding loop."""

import math
from collections import defaultdict

import pytest
import torch

from deepen import Ensemble
from deepen.methods.gac import GaC
from deepen.methods.safe import SAFE
from deepen.methods.union import UnionVocabulary
from deepen.methods.unite import UniTE
from deepen.vocabulary import normalise_vocabulary, text_to_id

PROMPTS = ["hello world", "the cat sat on the mat and", "a b c d e f g", "once upon a time"]


@pytest.fixture(scope="module")
def vocab(pair):
    """Per member: text -> token, and the texts both have / only one has (ordinary tokens of two bytes or more)."""
    maps = [text_to_id(normalise_vocabulary(m.tokenizer, m.vocab_size)) for m in pair]
    both = sorted(t for t in maps[0] if t in maps[1] and len(t) > 1)
    only = [sorted(t for t in maps[i] if t not in maps[1 - i] and len(t) > 1) for i in (0, 1)]
    return maps, both, only


def _logits(member, mass: dict[int, float]) -> torch.Tensor:
    """Logits [1, |V|] whose softmax puts ``mass`` on those tokens and spreads the rest evenly."""
    n = member.vocab_size
    rest = (1 - sum(mass.values())) / (n - len(mass))
    probs = torch.full((n,), rest)
    for token, p in mass.items():
        probs[token] = p
    return probs.log()[None]


def test_union_maps_tokens_by_decoded_text_sparsely(pair, vocab):
    maps, both, only = vocab
    union = UnionVocabulary(list(pair), [m.vocab_size for m in pair])
    for i, member in enumerate(pair):
        assert union.index[i].shape == (member.vocab_size,)  # an index map, not a |V| x |U| matrix
    text = both[0]
    entry = union.texts.index(text)
    assert union.back[0][entry] == maps[0][text] and union.back[1][entry] == maps[1][text]
    assert union.index[0][maps[0][text]] == entry == union.index[1][maps[1][text]]
    assert union.back[0][union.texts.index(only[1][0])] == -1  # a text the main model has no token for
    assert union.texts[: len(maps[0])][0] in maps[0]  # the main model's texts come first (ties go to them)


def test_gac_averages_on_the_union_and_gates_on_the_main_models_top_probability(pair, vocab):
    maps, both, _ = vocab
    x, y = both[0], both[1]
    main = _logits(pair[0], {maps[0][x]: 0.4, maps[0][y]: 0.3})
    assistant = _logits(pair[1], {maps[1][y]: 0.8})
    clock = defaultdict(float)
    gated = GaC(list(pair), gate=0.5).decide([main, assistant], None, clock)
    assert gated.pieces[0][0].token == maps[0][y] and gated.ensembled == [True]  # 0.4 <= 0.5: ensembled, y wins
    confident = _logits(pair[0], {maps[0][x]: 0.6, maps[0][y]: 0.3})
    assert GaC(list(pair), gate=0.5).decide([confident, assistant], None, clock).pieces[0][0].token == maps[0][x]
    always = GaC(list(pair), gate=1.0).decide([confident, assistant], None, clock)
    assert always.pieces[0][0].token == maps[0][y] and always.ensembled == [True]  # 0.3 + 0.8 > 0.6 + 0


def test_gac_appends_a_text_the_main_model_has_no_token_for_as_text(pair, vocab):
    maps, _, only = vocab
    z = only[1][0]
    main = _logits(pair[0], {})
    assistant = _logits(pair[1], {maps[1][z]: 0.95})
    piece = GaC(list(pair), gate=1.0).decide([main, assistant], None, defaultdict(float)).pieces[0][0]
    assert piece.token is None and piece.text == z


def test_unite_uses_a_missing_texts_first_subtoken_and_a_softmax_over_the_union_only(pair, vocab):
    maps, _, only = vocab
    method = UniTE(list(pair), k=2)
    text = only[1][0]
    encoded = pair[0].tokenizer(text.decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
    texts = normalise_vocabulary(pair[0].tokenizer, pair[0].vocab_size).texts
    assert method.token(0, text) == next(t for t in encoded if texts[t].strip())
    main = _logits(pair[0], {})
    assistant = _logits(pair[1], {maps[1][text]: 0.9})
    keys = method.union([main[0], assistant[0]])
    probs = method.averaged([main[0], assistant[0]], keys)
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)  # each member's softmax is over S only
    assert keys[int(probs.argmax())] == text
    assert method.choose_row([main[0], assistant[0]])[0] == method.token(0, text)  # the main model's token for it


@pytest.mark.parametrize("method", ["gac", "unite", "safe+gac"])
def test_weight_zero_on_the_others_reproduces_the_main_model_alone(pair, method):
    alone = Ensemble([pair[0]], progress=False).generate(PROMPTS, max_new_tokens=8, batch_size=2)
    options = {"gate": 1.0} if "gac" in method else {}
    ens = Ensemble(list(pair), method, weights=[1.0, 0.0], progress=False, **options)
    out = ens.generate(PROMPTS, max_new_tokens=8, batch_size=2)
    assert [o.token_ids for o in out] == [a.token_ids for a in alone]


@pytest.mark.parametrize("method", ["gac", "unite"])
def test_kv_resync_gives_the_tokens_of_re_encoding_from_scratch(pair, method):
    cached = Ensemble(list(pair), method, progress=False).generate(PROMPTS[:2], max_new_tokens=8)
    reference = Ensemble(list(pair), method, sync="reprefill", progress=False).generate(PROMPTS[:2], max_new_tokens=8)
    assert [o.token_ids for o in cached] == [o.token_ids for o in reference]


@pytest.mark.parametrize("method, options", [("gac", {}), ("gac", {"gate": 1.0}), ("unite", {}),
                                             ("safe+deepen", {"min_anchors": 10}), ("safe+gac", {}),
                                             ("safe+unite", {})])
def test_a_batch_decodes_each_row_as_it_would_alone(pair, method, options):
    ens = Ensemble(list(pair), method, progress=False, **options)
    batch = ens.generate(PROMPTS, max_new_tokens=10, batch_size=4)
    alone = [ens.generate([p], max_new_tokens=10)[0] for p in PROMPTS]
    assert [(o.text, o.token_ids, o.ensembled) for o in batch] == [(o.text, o.token_ids, o.ensembled) for o in alone]
    assert all(0 <= o.ensembled <= len(o.token_ids) for o in batch)


class _Member:
    def __init__(self, eos):
        self.eos_ids = frozenset([eos])


def _safe(weights=(0.5, 0.5)):
    safe = SAFE.__new__(SAFE)  # the checks alone, on hand-built verifier outputs
    safe.members, safe.weights = [_Member(0), _Member(0)], list(weights)
    return safe


def _peaked(n, token, p):
    probs = torch.full((n,), (1 - p) / (n - 1))
    probs[token] = p
    return probs.log()


def test_safe_ensembles_at_the_first_shared_boundary_where_members_may_disagree():
    safe, n = _safe(), 8
    draft = [3, 4, 5]
    drafter = [_peaked(n, t, 0.4)[None] for t in draft]
    # the verifier shares the boundaries before tokens 0 and 2, not before 1; it agrees at 0, disagrees at 2
    verified = [[{0: _peaked(n, 6, 0.9), ("next", 0): 6, 2: _peaked(n, 7, 0.9), ("next", 2): 1}]]
    assert safe._first_needing_ensemble(0, draft, drafter, verified) == 2
    # (ii-a): every verifier's own next token is its most likely one: nothing to ensemble
    verified[0][0][("next", 2)] = 7
    assert safe._first_needing_ensemble(0, draft, drafter, verified) is None
    # (ii-b): the weighted mean of the members' probabilities of their own next tokens exceeds 1/2 (the verifier's
    # own next token, 1, is not its most likely one, 7, but still likely)
    split = torch.full((n,), 0.05 / 6)
    split[7], split[1] = 0.5, 0.45
    verified[0][0].update({2: split.log(), ("next", 2): 1})
    strong = [_peaked(n, t, 0.95)[None] for t in draft]
    assert safe._first_needing_ensemble(0, draft, strong, verified) is None
    assert safe._first_needing_ensemble(0, draft, drafter, verified) == 2
    # (i): no shared boundary: nothing can be ensembled
    assert safe._first_needing_ensemble(0, draft, drafter, [[{}]]) is None


def test_safe_ensembles_fewer_steps_than_its_base(pair):
    base = Ensemble(list(pair), "gac", gate=1.0, progress=False).generate(PROMPTS, max_new_tokens=12)
    safe = Ensemble(list(pair), "safe+gac", gate=1.0, progress=False).generate(PROMPTS, max_new_tokens=12)
    assert sum(o.ensembled for o in safe) <= sum(o.ensembled for o in base)
    assert all(o.ensembled == len(o.token_ids) for o in base)  # GaC with gate 1 ensembles every step
