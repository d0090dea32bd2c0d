# DeePEn evaluation pipeline, one rule file per stage: models -> vocabularies -> anchors -> relative spaces -> prompts
# -> decode -> score -> Voting / MBR -> summary; studies: scaling with the number of members, η / T sweeps. The logic
# lives in deepen/pipeline (experiment.py: which methods run on which tasks); the rules only wire files together.
from snakemake.utils import min_version

min_version("9.0")


# A `--configfile` (config/paper.yaml, config/paper_translation.yaml) is a whole configuration: it replaces the embedded
# default instead of being merged into it key by key (Snakemake's merge would leak the default's task limits, models
# and studies into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/anchors.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/combine.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/studies.smk"


# Light bookkeeping steps run inside the Snakemake process, also on a cluster.
localrules:
    score,
    combine,
    adapt_weights,
    rank_members,
    summary,
    plots,
    scaling,
    sweep,


rule all:
    default_target: True
    input:
        rules.summary.output,
        rules.plots.output,
        EXPERIMENT.study_targets(),
