"""The CUDA path, on tiny synthetic members: the same numbers as on the CPU (fp32), and bf16 runs end to end.

Skipped where no GPU is visible (CI has none); run with ``pytest tests/cuda`` on a GPU machine.
"""

import pytest
import torch

from deepen import Ensemble, load_member
from deepen.fuse import Fuser, FusionConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

PROMPTS = ["The cat sat on the", "Hello world, this is a longer prompt.\nNext line:", "a", "numbers 12 34"]


@pytest.fixture(scope="module")
def both(pair_dirs):
    """The synthetic pair, fp32, once on the CPU and once on the GPU."""
    cpu = [load_member(d, device="cpu", dtype="float32") for d in pair_dirs]
    gpu = [load_member(d, device="cuda", dtype="float32") for d in pair_dirs]
    return cpu, gpu


def test_relative_spaces_and_fused_distributions_match_the_cpu(both):
    cpu, gpu = both
    e_cpu = Ensemble(cpu, min_anchors=50, progress=False)
    e_gpu = Ensemble(gpu, min_anchors=50, anchors=e_cpu.method.anchors, progress=False)
    for s_cpu, s_gpu in zip(e_cpu.method.spaces, e_gpu.method.spaces):
        assert s_gpu.device.type == "cuda"
        ids = torch.arange(min(s_cpu.vocab_size, 300))
        torch.testing.assert_close(s_gpu.rows(ids).cpu(), s_cpu.rows(ids), rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)
    logits = [3 * torch.randn(4, s.vocab_size) for s in e_cpu.method.spaces]
    probs = [torch.softmax(z, -1) for z in logits]
    cfg = dict(eta=0.5, steps=5)
    paper = [Fuser(e.method.spaces, FusionConfig(**cfg, mode="paper")) for e in (e_cpu, e_gpu)]
    torch.testing.assert_close(paper[1].fuse_paper(logits[0].cuda(), [p.cuda() for p in probs]).cpu(),
                               paper[0].fuse_paper(logits[0], probs), rtol=1e-4, atol=1e-4)
    fast = [Fuser(e.method.spaces, FusionConfig(**cfg, mode="fast")) for e in (e_cpu, e_gpu)]
    ids_cpu, z_cpu = fast[0].fuse_fast(logits[0], probs)
    ids_gpu, z_gpu = fast[1].fuse_fast(logits[0].cuda(), [p.cuda() for p in probs])
    assert ids_gpu.cpu().tolist() == ids_cpu.tolist()
    torch.testing.assert_close(z_gpu.cpu(), z_cpu, rtol=1e-4, atol=1e-4)
    assert fast[1].choose(logits[0].cuda(), [p.cuda() for p in probs])[0].cpu().tolist() == \
        fast[0].choose(logits[0], probs)[0].tolist()


@pytest.mark.parametrize("mode", ["fast", "paper"])
def test_generation_on_the_gpu_gives_the_cpu_tokens(both, mode):
    cpu, gpu = both
    kw = dict(eta=0.5, min_anchors=50, mode=mode, progress=False)
    ref = Ensemble(cpu, **kw).generate(PROMPTS, max_new_tokens=16, batch_size=4)
    got = Ensemble(gpu, **kw).generate(PROMPTS, max_new_tokens=16, batch_size=4)
    assert [o.token_ids for o in got] == [o.token_ids for o in ref]
    reprefill = Ensemble(gpu, sync="reprefill", **kw).generate(PROMPTS, max_new_tokens=16, batch_size=1)
    assert [o.token_ids for o in reprefill] == [o.token_ids for o in got]


def test_bf16_members_run_batched(pair_dirs):
    members = [load_member(d, device="cuda") for d in pair_dirs]  # auto: bf16 on a GPU
    assert members[0].model.dtype == torch.bfloat16
    ens = Ensemble(members, eta=0.5, min_anchors=50, progress=False)
    outs = ens.generate(PROMPTS, max_new_tokens=12, batch_size=4, ignore_eos=True)
    assert all(len(o.token_ids) == 12 for o in outs)
    choice = ens.generate(PROMPTS[:2], max_new_tokens=1, choices=[["A", "B"], ["A", "B"]], batch_size=2)
    assert [o.choice for o in choice] != [None, None]
