#!/usr/bin/env python3
"""Generates realistic OSV advisories for the Export Center benchmark (scripts/bench).

Every generated document is a real advisory of the Go vulnerability database (the
`GO-*.json` files of --source) varied so that no two are alike:

- a unique id `GO-9NNN-NNNNN` (9000 + index // 100000, then index % 100000), and the
  matching `database_specific.url`;
- affected module names recombined from the owners and repositories of other real
  modules (the template's module path is rewritten everywhere: import paths, summary,
  details, reference URLs); `stdlib` and `toolchain` advisories keep their packages;
- new version ranges of the same shape (introduced/fixed events, pre-release markers);
- new CVE and GHSA aliases, new commit hashes in reference URLs;
- a subset of the imported symbols, plus a few symbols of another real advisory;
- the details text extended with sentences of other real advisories (shuffled), until
  the compact size of the document reaches a size drawn from --size MIN:MAX;
- new `published` and `modified` dates.

The files are written pretty-printed with two-space indentation and Go's escaping of
`<`, `>` and `&`, like the originals, 1000 per sub-directory. Output depends only on
--seed, --count and the source files, so a run is reproducible.

Standard library only.
"""

import argparse
import copy
import datetime
import glob
import json
import multiprocessing
import os
import random
import re
import sys
from pathlib import Path
import time

SHARD = 1000
GHSA_ALPHABET = "23456789cfghjmpqrvwx"
HEX = "0123456789abcdef"
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
COMMIT = re.compile(r"\b[0-9a-f]{40}\b")
SPECIAL_MODULES = {"stdlib", "toolchain"}

# Filled in the parent before the workers fork (or by `init` for spawn).
CORPUS = None


def load_corpus(source):
    paths = sorted(glob.glob(os.path.join(source, "**", "GO-*.json"), recursive=True))
    if not paths:
        sys.exit(f"bench_gen: no GO-*.json files under {source}")
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs.append(json.load(f))
    owners, repos, hosts, sentences, symbols = set(), set(), [], [], []
    for doc in docs:
        for affected in doc.get("affected", []):
            name = affected.get("package", {}).get("name", "")
            parts = name.split("/")
            if name in SPECIAL_MODULES or len(parts) < 2:
                continue
            hosts.append(parts[0])
            if len(parts) >= 3:
                owners.add(parts[1])
                repos.add(parts[2])
            else:
                repos.add(parts[1])
            for imp in affected.get("ecosystem_specific", {}).get("imports", []):
                if imp.get("symbols"):
                    symbols.append(imp["symbols"])
        for paragraph in doc.get("details", "").split("\n\n"):
            for sentence in SENTENCE_SPLIT.split(paragraph.strip()):
                if 30 <= len(sentence) <= 400 and "\n" not in sentence:
                    if sentence[-1] not in ".!?":
                        sentence += "."
                    sentences.append(sentence)
    return {
        "docs": docs,
        "owners": sorted(owners),
        "repos": sorted(repos),
        "hosts": hosts,  # with repetition: github.com dominates, as in the data
        "sentences": sentences,
        "symbols": symbols,
        "files": len(paths),
    }


def compact_len(doc):
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def go_style(doc):
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def random_ghsa(rng):
    return "GHSA-" + "-".join("".join(rng.choice(GHSA_ALPHABET) for _ in range(4)) for _ in range(3))


def random_date(rng, start, end):
    span = int((end - start).total_seconds())
    return start + datetime.timedelta(seconds=rng.randrange(span))


def fmt_date(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def version_after(rng, prev):
    major, minor, patch = prev
    step = rng.random()
    if step < 0.55:
        return (major, minor, patch + rng.randint(1, 9))
    if step < 0.9:
        return (major, minor + rng.randint(1, 6), rng.randint(0, 4))
    return (major + 1, rng.randint(0, 3), rng.randint(0, 3))


def vary_events(rng, events):
    """New versions in the same shape: "0" stays "0", pre-release markers stay."""
    current = (rng.choice([0, 0, 0, 1, 1, 2, 3]), rng.randint(0, 30), rng.randint(0, 20))
    out = []
    for event in events:
        new = {}
        for key, value in event.items():
            if key in ("introduced", "fixed", "last_affected") and isinstance(value, str):
                if value == "0":
                    new[key] = "0"
                    continue
                current = version_after(rng, current)
                text = "%d.%d.%d" % current
                if value.endswith("-0"):
                    current = (current[0], current[1], 0)
                    text = "%d.%d.0-0" % current[:2]
                elif "-" in value:
                    text += "-" + value.split("-", 1)[1]
                new[key] = text
            else:
                new[key] = value
        out.append(new)
    return out


def new_module(rng, corpus, old):
    parts = old.split("/")
    host = rng.choice(corpus["hosts"])
    owner = rng.choice(corpus["owners"])
    repo = rng.choice(corpus["repos"])
    if rng.random() < 0.3:
        repo += "-" + rng.choice(corpus["repos"])
    module = f"{host}/{owner}/{repo}"
    # Keep a major-version suffix or extra path element shape of the template.
    if len(parts) > 3 and re.fullmatch(r"v\d+", parts[-1]):
        module += "/v%d" % rng.randint(2, 9)
    return module


def generate(index, seed, size_min, size_max):
    corpus = CORPUS
    rng = random.Random(seed * 1_000_003 + index)
    template = corpus["docs"][rng.randrange(len(corpus["docs"]))]
    doc = copy.deepcopy(template)
    old_id = doc["id"]
    new_id = "GO-%04d-%05d" % (9000 + index // 100000, index % 100000)

    # Text replacements applied to every string that mentions the template's identity.
    replacements = [(old_id, new_id)]

    # Modules and imports.
    for affected in doc.get("affected", []):
        package = affected.get("package", {})
        old = package.get("name", "")
        if old and old not in SPECIAL_MODULES and "/" in old:
            new = new_module(rng, corpus, old)
            package["name"] = new
            replacements.append((old, new))
            old_repo = "/".join(old.split("/")[:3])
            new_repo = "/".join(new.split("/")[:3])
            if old_repo != old and old_repo.count("/") == 2:
                replacements.append((old_repo, new_repo))
        for rng_range in affected.get("ranges", []):
            rng_range["events"] = vary_events(rng, rng_range.get("events", []))
        for imp in affected.get("ecosystem_specific", {}).get("imports", []):
            symbols = imp.get("symbols")
            if symbols:
                keep = [s for s in symbols if rng.random() < 0.8] or [rng.choice(symbols)]
                extra = rng.choice(corpus["symbols"])
                keep += rng.sample(extra, min(len(extra), rng.randint(0, 3)))
                imp["symbols"] = sorted(set(keep))

    # Aliases.
    aliases = []
    year = rng.randint(2019, 2025)
    for alias in doc.get("aliases", []):
        if alias.startswith("CVE-"):
            new = "CVE-%d-%d" % (year, rng.randint(1000, 99999))
        elif alias.startswith("GHSA-"):
            new = random_ghsa(rng)
        else:
            new = alias
        replacements.append((alias, new))
        aliases.append(new)
    if "aliases" in doc:
        doc["aliases"] = aliases

    # Longest first, so a module path is replaced before its repository prefix.
    replacements.sort(key=lambda pair: -len(pair[0]))

    def rewrite(text):
        for old, new in replacements:
            if old and old in text:
                text = text.replace(old, new)
        return text

    # Imports, summary, references, related.
    for affected in doc.get("affected", []):
        for imp in affected.get("ecosystem_specific", {}).get("imports", []):
            if "path" in imp:
                imp["path"] = rewrite(imp["path"])
    if "summary" in doc:
        doc["summary"] = rewrite(doc["summary"])
    for ref in doc.get("references", []):
        if "url" in ref:
            ref["url"] = COMMIT.sub(lambda _: "".join(rng.choice(HEX) for _ in range(40)), rewrite(ref["url"]))
    if "related" in doc:
        doc["related"] = [rewrite(r) for r in doc["related"]]
    database = doc.setdefault("database_specific", {})
    database["url"] = "https://pkg.go.dev/vuln/" + new_id

    # Dates.
    published = random_date(rng, datetime.datetime(2019, 1, 1), datetime.datetime(2025, 6, 30))
    modified = min(
        published + datetime.timedelta(seconds=rng.randrange(400 * 86400)),
        datetime.datetime(2025, 12, 31, 23, 59, 59),
    )
    doc["published"] = fmt_date(published)
    doc["modified"] = fmt_date(modified)
    if "withdrawn" in doc:
        doc["withdrawn"] = fmt_date(modified)

    # Details: the template's own sentences, lightly shuffled, then sentences of other
    # advisories until the drawn size is reached.
    paragraphs = [p for p in rewrite(doc.get("details", "")).split("\n\n") if p.strip()]
    if len(paragraphs) > 1 and rng.random() < 0.5:
        head, rest = paragraphs[0], paragraphs[1:]
        rng.shuffle(rest)
        paragraphs = [head] + rest
    want = rng.randint(size_min, size_max)
    size = compact_len(doc) - len(doc.get("details", "").encode("utf-8"))
    size += len("\n\n".join(paragraphs).encode("utf-8"))
    added = []
    while size < want:
        sentence = rng.choice(corpus["sentences"])
        added.append(sentence)
        size += len(sentence.encode("utf-8")) + 1
    if added:
        paragraphs.append(" ".join(added))
    doc["details"] = "\n\n".join(paragraphs)

    # Keep the originals' key order: id right after schema_version, as in the files.
    ordered = {}
    for key in template:
        if key == "id":
            ordered["id"] = new_id
        elif key in doc:
            ordered[key] = doc[key]
    for key in doc:
        ordered.setdefault(key, doc[key])
    ordered["id"] = new_id
    return new_id, ordered


def write_shard(args):
    shard, start, stop, out, seed, size_min, size_max = args
    directory = os.path.join(out, "%04d" % shard)
    os.makedirs(directory, exist_ok=True)
    pretty = compact = 0
    for index in range(start, stop):
        new_id, doc = generate(index, seed, size_min, size_max)
        text = go_style(doc).encode("utf-8")
        with open(os.path.join(directory, new_id + ".json"), "wb") as f:
            f.write(text)
        pretty += len(text)
        compact += compact_len(doc)
    return stop - start, pretty, compact


def init(source):
    global CORPUS
    if CORPUS is None:
        CORPUS = load_corpus(source)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(Path(__file__).resolve().parent.parent / "fixtures" / "corpus" / "osv-go"), help="directory of real GO-*.json advisories")
    parser.add_argument("--out", required=True, help="directory to write into (created; must be empty)")
    parser.add_argument("--count", type=int, default=100000, help="documents to generate (default 100000)")
    parser.add_argument("--seed", type=int, default=20250101, help="random seed (default 20250101)")
    parser.add_argument(
        "--size",
        default="1500:3500",
        help="MIN:MAX compact bytes: each document's details are extended with real sentences "
        "until its compact size reaches a size drawn uniformly from this range (default 1500:3500); "
        "templates already larger keep their size",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: nproc)")
    parser.add_argument("--stats", help="write a JSON summary to this file")
    args = parser.parse_args()
    size_min, size_max = (int(v) for v in args.size.split(":"))
    if args.count < 1 or size_min > size_max:
        parser.error("--count must be positive and --size MIN:MAX with MIN <= MAX")
    if os.path.isdir(args.out) and os.listdir(args.out):
        parser.error(f"--out {args.out} is not empty")
    os.makedirs(args.out, exist_ok=True)

    started = time.monotonic()
    global CORPUS
    CORPUS = load_corpus(args.source)
    tasks = [
        (shard, start, min(start + SHARD, args.count), args.out, args.seed, size_min, size_max)
        for shard, start in enumerate(range(0, args.count, SHARD))
    ]
    total = pretty = compact = 0
    if args.jobs > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(args.jobs, initializer=init, initargs=(args.source,)) as pool:
            for n, p, c in pool.imap_unordered(write_shard, tasks):
                total, pretty, compact = total + n, pretty + p, compact + c
    else:
        for task in tasks:
            n, p, c = write_shard(task)
            total, pretty, compact = total + n, pretty + p, compact + c
    elapsed = time.monotonic() - started
    stats = {
        "templates": CORPUS["files"],
        "documents": total,
        "pretty_bytes": pretty,
        "compact_bytes": compact,
        "mean_pretty_bytes": round(pretty / total),
        "mean_compact_bytes": round(compact / total),
        "seconds": round(elapsed, 1),
    }
    if args.stats:
        with open(args.stats, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2)
            f.write("\n")
    print(
        f"generated {total} documents from {CORPUS['files']} real advisories in {elapsed:.1f} s: "
        f"{pretty / 1e6:.1f} MB pretty-printed, mean {stats['mean_compact_bytes']} bytes compact"
    )


if __name__ == "__main__":
    main()
