"""The researcher's command line: ``python -m dressup COMMAND``.

Each command is a small function taking parsed arguments; the table ``COMMANDS`` wires them to argparse.
Errors a researcher can cause (a wrong study file, a missing catalogue, an unreadable image) print one
line naming the problem and the fix, and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dressup.arms import ArmLoadError
from dressup.config import StudyFileError, load_study


def _study(args):
    return load_study(args.study)


def cmd_demo_catalogue(args) -> int:
    from dressup.democatalog import build_demo_catalogue

    study = load_study(args.study) if args.study else None
    c = study.catalogue if study else None
    out = Path(args.out) if args.out else c.root
    build_demo_catalogue(out, size=args.size or (c.size if c else 4000),
                         image_size=args.image_size or (c.image_size if c else 64),
                         seed=args.seed if args.seed is not None else (c.seed if c else 0),
                         inshop_garments=c.inshop_garments if c else 0)
    print(f"demo catalogue written to {out}")
    return 0


def cmd_demo_build(args) -> int:
    from dressup.arms import build_arms

    study = _study(args)
    if study.profile != "demo":
        print(f"study {study.name} is a {study.profile} study; demo build is for demo studies", file=sys.stderr)
        return 2
    from dressup.demo import ensure_demo_build

    how = ensure_demo_build(study, progress=True, force=args.force, from_scratch=args.from_scratch)
    build_arms(study, progress=True)  # also builds the indexes, so the app starts warm
    print(f"demo build ready under {study.cache_dir} (models {how})")
    return 0


def cmd_demo_pack(args) -> int:
    from dressup.demo import build_key, is_built
    from dressup.weights import pack

    study = _study(args)
    if not is_built(study):
        print(f"the demo build under {study.cache_dir} is missing or not from {study.path.name}'s recipes; run "
              f"`python -m dressup demo build --from-scratch` first", file=sys.stderr)
        return 2
    out = pack(study, key=build_key(study, version=False), out=Path(args.out) if args.out else None)
    print(f"weights packed into {out}")
    return 0


def cmd_train(args) -> int:
    from dressup.demo import train_from_spec

    study = _study(args)
    names = args.name or list(study.train)
    for name in names:
        if name not in study.train:
            print(f"no [train.{name}] in {study.path}; it has {sorted(study.train)}", file=sys.stderr)
            return 2
        train_from_spec(study, study.train[name], progress=True, steps=args.steps)
    return 0


def cmd_train_gan(args) -> int:
    from dressup.demo import train_gan_from_study

    train_gan_from_study(_study(args), arm=args.arm, steps=args.steps, progress=True)
    return 0


def _preference(args):
    from dressup.images import load_image
    from dressup.records import Preference

    return Preference(text=args.text or "", images=[load_image(p) for p in (args.image or [])],
                      gender=args.gender, avoid_colours=args.avoid or [])


def _write_grid(shown, out: Path) -> Path:
    from dressup.grid import grid_image

    out.parent.mkdir(parents=True, exist_ok=True)
    grid_image([s.image for s in shown]).save(out)
    return out


def cmd_recommend(args) -> int:
    from dressup.arms import build_arms

    study = _study(args)
    pref = _preference(args)  # a bad photo fails before minutes of model loading
    arms = build_arms(study, progress=not args.json)
    if args.arm not in arms:
        print(f"no arm {args.arm!r} in {study.path}; it has {sorted(arms)}", file=sys.stderr)
        return 2
    shown = arms[args.arm].recommend(pref, seed=args.seed)
    grid = _write_grid(shown, Path(args.out or f"results/recommend-{args.arm}.png"))
    root = study.catalogue.root
    rows = []
    for s in shown:
        item = None
        if hasattr(arms[args.arm], "index"):
            item = next((it for it in arms[args.arm].index.items if it.item_id == s.item_id), None)
        rows.append({
            "item_id": s.item_id,
            "image": str(Path(item.image_path).relative_to(root)) if item else "",
            "caption": s.caption,
            "attributes": list(item.attributes) if item else [],
            "score": round(s.score, 6),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for i, r in enumerate(rows, 1):
            print(f"{i}. {r['score']:.3f}  {r['item_id']}  {r['caption']}")
        print(f"grid written to {grid}")
    return 0


def cmd_generate(args) -> int:
    from dressup.arms import build_arms

    study = _study(args)
    pref = _preference(args)
    arms = build_arms(study, progress=True)
    if args.arm not in arms:
        print(f"no arm {args.arm!r} in {study.path}; it has {sorted(arms)}", file=sys.stderr)
        return 2
    shown = arms[args.arm].recommend(pref, seed=args.seed)
    out = Path(args.out or f"results/generate-{args.arm}")
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(shown, 1):
        s.image.save(out / f"{i}.png")
        print(f"{i}. {s.item_id}  {out / f'{i}.png'}")
    print(f"grid written to {_write_grid(shown, out / 'grid.png')}")
    return 0


def cmd_evaluate(args) -> int:
    from dressup.evaluate import main as evaluate_main

    return evaluate_main(args)


def cmd_subset(args) -> int:
    from dressup.subset import write_study_subset

    info = write_study_subset(_study(args))
    if args.json:
        print(json.dumps({"path": str(info.path), "key": info.key, "counts": info.counts,
                          "categories": info.categories}, indent=2))
    else:
        print(f"subset written to {info.path}: " + ", ".join(f"{n} {s}" for s, n in info.counts.items()))
    return 0


def cmd_doctor(args) -> int:
    from dressup.doctor import doctor

    ok = doctor(_study(args), as_json=args.json)
    return 0 if ok else 1  # 1: not ready (a fault is named in the report); 2: the study file itself is wrong


def cmd_publish(args) -> int:
    from dressup.publish import check_repo_id, encoder_folder, find_token, publish

    folder = encoder_folder(args.encoder, args.study)  # a wrong folder or repo is named before a missing token
    check_repo_id(args.repo)
    result = publish(str(folder), args.repo, token=find_token(args.token_env), private=not args.public,
                     endpoint=args.endpoint)
    print(f"published {folder} to {result.url} ({'private' if result.private else 'public'}, "
          f"{result.layout} layout); name it in the study file:")
    print("\n".join(result.study_lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dressup", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def study_arg(sp):
        sp.add_argument("--study", help="study file (default: $DRESSUP_STUDY or assets/demo.toml)")

    demo = sub.add_parser("demo", help="the demo profile: catalogue and models")
    dsub = demo.add_subparsers(dest="demo_command", required=True)
    dc = dsub.add_parser("catalogue", help="draw the synthetic catalogue in DeepFashion's format")
    study_arg(dc)
    dc.add_argument("--out")
    dc.add_argument("--size", type=int)
    dc.add_argument("--image-size", type=int)
    dc.add_argument("--seed", type=int)
    dc.set_defaults(func=cmd_demo_catalogue)
    db = dsub.add_parser("build", help="catalogue -> shipped weights (or baseline -> finetuned -> STN -> "
                                       "generator) -> indexes (cached)")
    study_arg(db)
    db.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    db.add_argument("--from-scratch", action="store_true",
                    help="train every model here instead of using the study's shipped weights")
    db.set_defaults(func=cmd_demo_build)
    dp = dsub.add_parser("pack", help="copy a finished build's trained weights into the study's weights folder, "
                                      "with their sha256 and recipe key (what a fresh clone starts from)")
    study_arg(dp)
    dp.add_argument("--out", help="folder (default: the study's [study] weights)")
    dp.set_defaults(func=cmd_demo_pack)

    t = sub.add_parser("train", help="train encoders from the study's [train.*] recipes")
    study_arg(t)
    t.add_argument("name", nargs="*", help="recipe names (default: all, in dependency order)")
    t.add_argument("--steps", type=int, help="override the recipe's step count")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("train-gan", help="train the conditional DCGAN of a generative arm")
    study_arg(g)
    g.add_argument("--arm", default="generative")
    g.add_argument("--steps", type=int)
    g.set_defaults(func=cmd_train_gan)

    for name, func, helptext in (("recommend", cmd_recommend, "four items from a retrieval arm"),
                                 ("generate", cmd_generate, "four images from a generative arm")):
        r = sub.add_parser(name, help=helptext)
        study_arg(r)
        r.add_argument("--arm", required=True)
        r.add_argument("--text", default="")
        r.add_argument("--image", action="append", help="a photo of clothes you like (repeatable)")
        r.add_argument("--gender", choices=["menswear", "womenswear"])
        r.add_argument("--avoid", action="append", help="a colour to avoid (repeatable)")
        r.add_argument("--seed", type=int, default=0)
        r.add_argument("--out", help="where to write the grid PNG (recommend) or the images (generate)")
        r.add_argument("--json", action="store_true", help="print a JSON list for scripts")
        r.set_defaults(func=func)

    e = sub.add_parser("evaluate", help="model-selection metrics (Table 1, PCA, top-k, participant queries)")
    study_arg(e)
    e.add_argument("--encoders", nargs="*", help="encoder names from the study file (default: all)")
    e.add_argument("--split", default="test")
    e.add_argument("--queries", help="participant-language query file (default: assets/queries.tsv)")
    e.add_argument("--out", default="results/model-selection")
    e.add_argument("--pca-n", type=int, default=500)
    e.add_argument("--parts", nargs="*", choices=["table1", "topk", "queries", "fusion", "photos"],
                   help="which parts to run (default: all)")
    e.add_argument("--photos", help="folder of real photos used as a participant's uploads (default: assets/photos)")
    e.add_argument("--inshop", help="In-shop Clothes Retrieval folder (default: the catalogue's inshop/ subfolder)")
    e.set_defaults(func=cmd_evaluate)

    ss = sub.add_parser("subset", help="draw the study's [catalogue] subset (the paper's 14k/2k/4k) into its cache")
    study_arg(ss)
    ss.add_argument("--json", action="store_true", help="print the file, its key and the counts as JSON")
    ss.set_defaults(func=cmd_subset)

    pb = sub.add_parser("publish", help="upload a trained encoder (a local: folder) to a Hub model repo and print "
                                         "the spec that names it (hf-hub:, transformers: or hub-local:)")
    study_arg(pb)
    pb.add_argument("encoder", help="the local: folder, or an encoder name of the study file")
    pb.add_argument("--repo", required=True, help="USER/NAME (or ORG/NAME) of the model repo")
    vis = pb.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="public", action="store_false", help="a private repo (default)")
    vis.add_argument("--public", dest="public", action="store_true", help="a public repo")
    pb.add_argument("--endpoint", help="the Hub's URL (default: $HF_ENDPOINT or huggingface.co)")
    pb.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding a write token "
                                                            "(default HF_TOKEN; else the saved `hf auth login`)")
    pb.set_defaults(func=cmd_publish, public=False)

    d = sub.add_parser("doctor", help="would the study run here? weights, catalogue, GPU, storage, secrets "
                                      "(no downloads); exit 0 only when ready")
    study_arg(d)
    d.add_argument("--json", action="store_true", help="print a JSON list of checks (arm/what/ok/level/detail/fix)")
    d.set_defaults(func=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StudyFileError, FileNotFoundError, ArmLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # user-caused errors from the library (ImageError, CatalogError, ...)
        if type(e).__module__.startswith("dressup"):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
