"""Rule decode: one shard of one (method, task) -> predictions Parquet."""
import json
import os
import socket
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline import decode_shard, load_ensemble

torch.set_num_threads(snakemake.threads)
if os.environ.get("SLURM_JOB_ID"):  # which cluster job ran this shard, and the GPUs SLURM gave it
    print(f"[deepen] SLURM job {os.environ['SLURM_JOB_ID']} on {socket.gethostname()}, "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", file=sys.stderr)
spec = snakemake.params.spec
weights = spec["weights"]
if "weights" in snakemake.input.keys():
    weights = json.loads(open(snakemake.input.weights).read())["weights"]
    print(f"[deepen] DeePEn-Adapt weights {weights}", file=sys.stderr)
members, models, metas = spec["members"], list(snakemake.input.models), list(snakemake.input.metas)
remote = spec["trust_remote_code"]
if "ranking" in snakemake.input.keys():  # scaling study: the first k members of the pool by dev accuracy
    from deepen.studies import ranked_members

    pick, dev_weights = ranked_members(snakemake.input.ranking, members, spec["top_k"])
    members, models, metas, remote = ([x[i] for i in pick] for x in (members, models, metas, remote))
    weights = dev_weights if spec["dev_weights"] else None
    print(f"[deepen] scaling k={spec['top_k']}: {', '.join(members)} (weights {weights or 'uniform'})",
          file=sys.stderr)
ensemble = load_ensemble(
    models, metas, members, weights=weights, eta=spec["eta"],
    steps=spec["steps"], mode=spec["mode"], anchors_path=snakemake.input.get("anchors"),
    relative_paths=list(snakemake.input.get("relative", [])), topk=spec["topk"], mass=spec["mass"],
    dtype=spec["dtype"], device=snakemake.params.device, device_map=snakemake.params.device_map,
    trust_remote_code=remote,
)
decode_shard(ensemble, snakemake.input.prompts, int(snakemake.wildcards.shard), int(snakemake.wildcards.n),
             snakemake.output[0], batch_size=spec["batch_size"])
