"""``kgrag finetune``: LoRA fine-tuning of a local transformers generator on kgrag's prompts."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


def build_examples(settings, *, tasks: tuple[str, ...], max_studies: int, k: int, seed: int, progress: bool,
                   model_name: str = "default"):
    """Examples from the train split: each study's own image queries the pipeline (the study
    itself is removed from its evidence); targets are its report and its question answers."""
    import random

    from kgrag.generation.base import task_for
    from kgrag.generation.finetune import Example, report_target
    from kgrag.query.pipeline import Query, QueryPipeline

    pipe = QueryPipeline.from_settings(settings, model_name=model_name)
    try:
        studies = [s for s in pipe.docstore.studies(split="train") if s.images]
        random.Random(seed).shuffle(studies)
        studies = sorted(studies[:max_studies], key=lambda s: s.id)
        out = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(studies), desc="examples", unit="study")
        for s in studies:
            asks: list[tuple[str | None, str, str]] = []
            if "report" in tasks:
                asks.append((None, "report", report_target(s.findings, s.impression, s.report)))
            if "vqa" in tasks:
                for qa in s.questions:
                    ans = str(qa.get("answer", "")).strip().lower()
                    if qa.get("question") and ans in ("yes", "no"):
                        asks.append((qa["question"], "closed_vqa", "Yes." if ans == "yes" else "No."))
            for question, task, target in asks:
                if not target:
                    continue
                st = pipe.retrieve(pipe.state_for(Query(images=list(s.images), question=question, k=k + 1)))
                b = pipe.bundle(st).without([s.id])
                b = b.without(b.evidence_ids[k:])
                out.append(Example(s.id, s.split, task if question is None else task_for(b), b, target))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return out, pipe.graph_version, pipe.index.version
    finally:
        pipe.close()


@click.command("finetune")
@click.option("--model-path", required=True, type=click.Path(exists=True, file_okay=False),
              help="Local transformers base model (causal LM or VLM) to adapt.")
@click.option("--task", "task", type=click.Choice(["report", "vqa", "all"]), default="all", show_default=True,
              help="Targets: the study's report, its yes/no answers, or both.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True, help="AdamW steps.")
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lora-r", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lora-alpha", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lora-dropout", type=click.FloatRange(0.0, 1.0), default=0.05, show_default=True)
@click.option("--target-modules", default=None, help="Comma-separated module names for LoRA (default: peft's for the model).")
@click.option("--max-studies", type=click.IntRange(min=1), default=200, show_default=True,
              help="Train-split studies sampled (seeded) for examples.")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="Evidence documents per prompt.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, help="Save the adapter every N steps (0: only at the end).")
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--name", default="lora", show_default=True, help="Output: $KGRAG_HOME/models/<name>.")
@home_option
@json_option
def finetune(model_path, task, steps, lr, batch_size, lora_r, lora_alpha, lora_dropout, target_modules, max_studies, k,
             checkpoint_every, seed, name, home, as_json) -> None:
    """LoRA + AdamW on prompts built from evidence bundles of train-split studies (test studies never enter)."""
    from kgrag.errors import InputError
    from kgrag.generation.finetune import LoraSettings
    from kgrag.generation.finetune import finetune as run

    if not name.replace("-", "").replace("_", "").isalnum() or name == "default":
        raise InputError(f"--name {name!r} must be alphanumeric ('-', '_' allowed) and not 'default' (the retrieval model)",
                         fix="e.g. --name lora")
    settings = settings_for(home)
    tasks = ("report", "vqa") if task == "all" else (task,)
    examples, graph_version, index_version = build_examples(settings, tasks=tasks, max_studies=max_studies, k=k, seed=seed,
                                                            progress=True)
    mods = [m.strip() for m in target_modules.split(",") if m.strip()] if target_modules else None
    rep = run(model_path, examples, settings.models_dir / name, steps=steps, lr=lr, batch_size=batch_size,
              lora=LoraSettings(lora_r, lora_alpha, lora_dropout, mods), seed=seed, device=settings.generation.device,
              checkpoint_every=checkpoint_every, graph_version=graph_version, index_version=index_version, progress=True)
    if as_json:
        emit_json(rep.to_dict())
        return
    click.echo(f"adapter: {rep.out_dir}")
    click.echo(f"examples: {rep.n_examples} from {rep.n_studies} train studies (data {rep.data_hash})")
    click.echo(f"loss over the examples: {rep.loss_before:.4f} -> {rep.loss_after:.4f} after {rep.steps} steps")
    click.echo(f"use it: kgrag query --generator transformers --model-path {rep.out_dir} ...")
