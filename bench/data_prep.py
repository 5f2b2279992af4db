"""Data preparation throughput and peak memory: the corpus, the extended vocabulary and the pretraining examples,
each stage in a process of its own (as the workflow's rules run them), at 1x and 10x the mirror's corpus.

The corpus is the mini profile's (config/demo_corpus_urls.txt: the mirror's CRAFT text and PLOS JATS articles),
read as local files from the mirror; 10x lists every document ten times (the corpus reader keeps repeats of a
local path). The vocabulary (the mini profile's base vocab + 17,658 domain tokens) and the examples (the mini
profile's max_seq_length and num_proc) are built from that stage's corpus.

    python bench/data_prep.py                       # the first 30 documents, 1x and 10x: about two minutes
    python bench/data_prep.py --documents 0         # the whole mirror corpus (1.39M words; 10x takes long)

Per stage and scale one JSON line: seconds, tokens/s (whitespace tokens of the corpus read, for corpus and
vocab; word pieces written, for the examples) and peak resident memory (resource.getrusage of the stage's
process, and of its worker processes), then one summary line with the 10x / 1x memory ratios (target <= 1.2).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import harness
from edad_core.corpus import build_corpus
from edad_core.pretrain_data import create_examples
from edad_core.vocab import build_extended_vocab

STAGES = ("corpus", "vocab", "examples")
SUBSET_EXT_SIZE = 1000  # extension tokens a few documents can give (the whole corpus gives the profile's 17,658)


def mirror_documents(config: dict, mirror: Path, documents: int) -> list[str]:
    """The mirror paths of the mini profile's corpus URLs (the first `documents`; 0 = all)."""
    url_file = harness.PROJECT / config["corpus"]["sources"][0]["url_file"]
    urls = [line.split()[0] for line in url_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    paths = [str(mirror / urllib.parse.urlsplit(u).netloc / urllib.parse.urlsplit(u).path.lstrip("/")) for u in urls]
    return paths[:documents] if documents else paths


def run_stage(stage: str, scale: int, root: Path, args) -> dict:
    """One stage in this process (the child); returns its figures."""
    config = harness.profile_config("mini")
    folder = root / f"x{scale}"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    start = time.perf_counter()
    if stage == "corpus":
        paths = mirror_documents(config, Path(args.mirror), args.documents) * scale
        stats = build_corpus([{"kind": "local", "paths": paths}], corpus, folder / "stats.json",
                             folder / "manifest.tsv", n_tokens=None, cache_dir=folder / "cache")
        tokens = stats["tokens"]
    elif stage == "vocab":
        vocab = config["vocab"]
        ext_size = args.ext_size or (vocab["ext_size"] if not args.documents else SUBSET_EXT_SIZE)
        build_extended_vocab([corpus], config["models"]["teacher"]["base"], folder / "vocab", ext_size=ext_size,
                             total_size=vocab["total_size"] - vocab["ext_size"] + ext_size,
                             lowercase=vocab["lowercase"], min_frequency=vocab["min_frequency"])
        tokens = json.loads((folder / "stats.json").read_text())["tokens"]
    else:
        settings = config["pretrain_data"]
        meta = create_examples(corpus, folder / "vocab", folder / "examples",
                               max_seq_length=settings["max_seq_length"], short_seq_prob=settings["short_seq_prob"],
                               random_next_prob=settings["random_next_prob"], dupe_factor=settings["dupe_factor"],
                               seed=settings["seed"], num_proc=settings["num_proc"],
                               chunk_sentences=settings["chunk_sentences"])
        tokens = meta["n_tokens"]
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"stage": stage, "scale": scale, "seconds": round(seconds, 2), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds), "peak_rss_mb": round(own, 1), "workers_peak_rss_mb": round(workers, 1),
            "load": harness.load_average()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--documents", type=int, default=30, help="the first N documents of the corpus list (0 = all)")
    p.add_argument("--ext-size", type=int, help=f"extension tokens of the vocab (default: the profile's with all "
                   f"documents, {SUBSET_EXT_SIZE} with a subset)")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    p.add_argument("--mirror", default=str(harness.PROJECT.parent / "shared" / "mirror"))
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # the child process's own stage
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.scales[0], Path(args.root), args)), flush=True)
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="edad-data-bench-") as root:
        for scale in args.scales:
            for stage in STAGES:
                child = subprocess.run(
                    [sys.executable, __file__, "--stage", stage, "--root", root, "--scales", str(scale),
                     "--documents", str(args.documents), "--mirror", args.mirror, "--ext-size", str(args.ext_size or 0)],
                    check=True, stdout=subprocess.PIPE, text=True)
                results[stage, scale] = json.loads(child.stdout.strip().splitlines()[-1])
                harness.emit({"documents": args.documents or "all", **results[stage, scale]})
    low, high = min(args.scales), max(args.scales)
    parts = []
    for stage in STAGES:
        a, b = results[stage, low], results[stage, high]
        memory = max(b["peak_rss_mb"], b["workers_peak_rss_mb"]) / max(a["peak_rss_mb"], a["workers_peak_rss_mb"])
        parts.append(f"{stage} {a['tokens_per_s']:,} / {b['tokens_per_s']:,} tok/s, memory x{memory:.2f}")
    harness.summary_line("data_prep", f"{args.documents or 'all'} documents, {low}x / {high}x: " + "; ".join(parts))


if __name__ == "__main__":
    main()
