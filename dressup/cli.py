"""The researcher's command line: ``python -m dressup COMMAND``.

Each command is a small function taking parsed arguments; ``build_parser`` wires them to argparse. Every
command takes ``--study`` and ``--json`` (one JSON value on stdout for scripts; progress and the library's own
lines then go to stderr). Arguments that name something in the study file (an arm, a recipe, an encoder) are
checked against the file before anything is loaded, so a typo is refused in a second, not after minutes of
model loading. Errors a researcher can cause (a wrong study file, a missing catalogue, an unreadable image)
print one line naming the problem and the fix, and exit with status 2.

Heavy modules (torch, faiss, diffusers, the Hub client) are imported inside the command that needs them, so
``--help``, ``--version`` and argument errors answer at once.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dressup import __version__
from dressup.config import StudyFileError, load_study, read_study_file
from dressup.study_schema import SCHEMA_PATH, StudyFile, json_schema_text, write_json_schema


class ArgumentError(ValueError):
    """A command-line argument the study file cannot satisfy (an arm or recipe it does not define)."""


# --- output --------------------------------------------------------------------------------------------------
def _emit(args, data: Any, lines: Sequence[str] = ()) -> None:
    """The command's result: ``data`` as JSON with ``--json``, else ``lines``, on the command's stdout."""
    out = getattr(args, "stdout", None) or sys.stdout
    if args.json:
        print(json.dumps(data, indent=2, default=str), file=out)
    else:
        for line in lines:
            print(line, file=out)


@contextlib.contextmanager
def _stdout_to_stderr(args) -> Iterator[None]:
    """With ``--json``, stdout carries only the JSON: what the library prints on the way goes to stderr."""
    if not args.json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


# --- checks of arguments against the study file, before anything heavy ---------------------------------------
def _check_arm(args) -> tuple[Path, StudyFile]:
    path, _, doc = read_study_file(args.study)
    if args.arm not in doc.arms:
        raise ArgumentError(f"no arm {args.arm!r} in {path}; it has {sorted(doc.arms)}")
    return path, doc


def _check_gan_arm(args) -> None:
    path, doc = _check_arm(args)
    generator = doc.arms[args.arm].generator
    if generator is None or generator.kind != "dcgan":
        dcgan = sorted(n for n, a in doc.arms.items() if a.generator is not None and a.generator.kind == "dcgan")
        which = f"pass --arm with one of {dcgan}" if dcgan else "this study has none"
        raise ArgumentError(f"arm {args.arm!r} of {path} has no dcgan generator; train-gan trains the DCGAN of a "
                            f"generative arm with generator kind = \"dcgan\" ({which})")


def _check_recipes(args) -> None:
    path, _, doc = read_study_file(args.study)
    for name in args.name or []:
        if name not in doc.train:
            raise ArgumentError(f"no [train.{name}] in {path}; it has {sorted(doc.train)}")


def _check_encoders(args) -> None:
    path, _, doc = read_study_file(args.study)
    unknown = [n for n in args.encoders or [] if n not in doc.encoders]
    if unknown:
        raise ArgumentError(f"no encoder {unknown[0]!r} under [encoders] of {path}; it has {sorted(doc.encoders)}")


# --- commands ------------------------------------------------------------------------------------------------
def _study(args):
    return load_study(args.study)


def _arms(study, args) -> dict:
    """The study's arms, ready to recommend; a demo study's build (shipped weights or training) comes first."""
    from dressup.arms import build_arms
    from dressup.demo import ensure_study_models

    ensure_study_models(study, progress=not args.json)
    return build_arms(study, progress=not args.json)


def cmd_demo_catalogue(args) -> int:
    from dressup.democatalog import build_demo_catalogue

    study = load_study(args.study) if args.study or not args.out else None  # no --out: the study's root
    c = study.catalogue if study else None
    out = Path(args.out) if args.out else c.root
    build_demo_catalogue(out, size=args.size or (c.size if c else 4000),
                         image_size=args.image_size or (c.image_size if c else 64),
                         seed=args.seed if args.seed is not None else (c.seed if c else 0),
                         inshop_garments=c.inshop_garments if c else 0, progress=not args.json)
    _emit(args, {"catalogue": str(out)}, [f"demo catalogue written to {out}"])
    return 0


def cmd_demo_build(args) -> int:
    from dressup.arms import build_arms
    from dressup.demo import ensure_demo_build

    study = _study(args)
    if study.profile != "demo":
        print(f"study {study.name} is a {study.profile} study; demo build is for demo studies", file=sys.stderr)
        return 2
    how = ensure_demo_build(study, progress=not args.json, force=args.force, from_scratch=args.from_scratch)
    arms = build_arms(study, progress=not args.json)  # also builds the indexes, so the app starts warm
    _emit(args, {"cache_dir": str(study.cache_dir), "models": how, "arms": sorted(arms)},
          [f"demo build ready under {study.cache_dir} (models {how})"])
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
    _emit(args, {"weights": str(out)}, [f"weights packed into {out}"])
    return 0


def cmd_train(args) -> int:
    from dressup.demo import train_from_spec

    study = _study(args)
    trained = {}
    for name in args.name or list(study.train):
        trained[name] = train_from_spec(study, study.train[name], progress=not args.json, steps=args.steps)
    _emit(args, {"trained": trained})
    return 0


def cmd_train_gan(args) -> int:
    from dressup.demo import train_gan_from_study

    out = train_gan_from_study(_study(args), arm=args.arm, steps=args.steps, progress=not args.json)
    _emit(args, {"arm": args.arm, "checkpoint": out})
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


def _item_row(arm, s, root: Path) -> dict[str, Any]:
    index = getattr(arm, "index", None)
    item = next((it for it in index.items if it.item_id == s.item_id), None) if index is not None else None
    return {"item_id": s.item_id, "image": str(Path(item.image_path).relative_to(root)) if item else "",
            "caption": s.caption, "attributes": list(item.attributes) if item else [], "score": round(s.score, 6)}


def cmd_recommend(args) -> int:
    study = _study(args)
    pref = _preference(args)  # a bad photo fails before minutes of model loading
    arm = _arms(study, args)[args.arm]
    shown = arm.recommend(pref, seed=args.seed)
    grid = _write_grid(shown, Path(args.out or f"results/recommend-{args.arm}.png"))
    rows = [_item_row(arm, s, study.catalogue.root) for s in shown]
    _emit(args, rows, [f"{i}. {r['score']:.3f}  {r['item_id']}  {r['caption']}" for i, r in enumerate(rows, 1)]
          + [f"grid written to {grid}"])
    return 0


def cmd_generate(args) -> int:
    study = _study(args)
    pref = _preference(args)
    shown = _arms(study, args)[args.arm].recommend(pref, seed=args.seed)
    out = Path(args.out or f"results/generate-{args.arm}")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(shown, 1):
        s.image.save(out / f"{i}.png")
        rows.append({"item_id": s.item_id, "image": str(out / f"{i}.png"), "caption": s.caption})
    grid = _write_grid(shown, out / "grid.png")
    _emit(args, rows, [f"{i}. {r['item_id']}  {r['image']}" for i, r in enumerate(rows, 1)]
          + [f"grid written to {grid}"])
    return 0


def cmd_evaluate(args) -> int:
    from dressup.evaluate import PARTS, evaluate_study
    from dressup.evaluate import main as evaluate_main

    if not args.json:
        return evaluate_main(args)
    result = evaluate_study(_study(args), encoders=args.encoders, split=args.split, queries=args.queries,
                            out=args.out, pca_n=args.pca_n, photos=args.photos, inshop=args.inshop,
                            parts=args.parts or PARTS, progress=False)
    _emit(args, dataclasses.asdict(result))
    return 0


def cmd_subset(args) -> int:
    from dressup.subset import write_study_subset

    info = write_study_subset(_study(args))
    _emit(args, {"path": str(info.path), "key": info.key, "counts": info.counts, "categories": info.categories},
          [f"subset written to {info.path}: " + ", ".join(f"{n} {s}" for s, n in info.counts.items())])
    return 0


def cmd_doctor(args) -> int:
    from dressup.doctor import doctor

    with contextlib.redirect_stdout(args.stdout):  # the report is the result, JSON or not
        ok = doctor(_study(args), as_json=args.json)
    return 0 if ok else 1  # 1: not ready (a fault is named in the report); 2: the study file itself is wrong


def cmd_publish(args) -> int:
    from dressup.publish import check_repo_id, encoder_folder, find_token, publish

    folder = encoder_folder(args.encoder, args.study)  # a wrong folder or repo is named before a missing token
    check_repo_id(args.repo)
    result = publish(str(folder), args.repo, token=find_token(args.token_env), private=not args.public,
                     endpoint=args.endpoint)
    _emit(args, {"folder": str(folder), **dataclasses.asdict(result)},
          [f"published {folder} to {result.url} ({'private' if result.private else 'public'}, {result.layout} "
           "layout); name it in the study file:", *result.study_lines])
    return 0


def cmd_schema(args) -> int:
    path = Path(args.out) if args.out else SCHEMA_PATH
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    up_to_date = current == json_schema_text()
    if args.check:
        _emit(args, {"schema": str(path), "up_to_date": up_to_date},
              [f"{path} is up to date" if up_to_date else f"{path} is out of date; run `python -m dressup schema`"])
        return 0 if up_to_date else 1
    write_json_schema(path)
    _emit(args, {"schema": str(path), "changed": not up_to_date}, [f"study file schema written to {path}"])
    return 0


# --- the parser ----------------------------------------------------------------------------------------------
JSON_HELP = "print the result as JSON on stdout (progress goes to stderr)"


def _command(sub, name: str, func: Callable[[Any], int], helptext: str, *, check: Callable[[Any], None] | None = None,
             json_help: str = JSON_HELP) -> argparse.ArgumentParser:
    """A subcommand with the options every command takes (--study, --json); ``check`` runs before ``func``."""
    sp = sub.add_parser(name, help=helptext, description=helptext)
    sp.add_argument("--study", help="study file (default: $DRESSUP_STUDY or assets/demo.toml)")
    sp.add_argument("--json", action="store_true", help=json_help)
    sp.set_defaults(func=func, preflight=check)
    return sp


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="the demo profile: catalogue and models")
    dsub = demo.add_subparsers(dest="demo_command", required=True, metavar="{catalogue,build,pack}")
    dc = _command(dsub, "catalogue", cmd_demo_catalogue, "draw the synthetic catalogue in DeepFashion's format")
    dc.add_argument("--out")
    dc.add_argument("--size", type=int)
    dc.add_argument("--image-size", type=int)
    dc.add_argument("--seed", type=int)
    db = _command(dsub, "build", cmd_demo_build, "catalogue -> shipped weights (or baseline -> finetuned -> STN -> "
                                                 "generator) -> indexes (cached)")
    db.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    db.add_argument("--from-scratch", action="store_true",
                    help="train every model here instead of using the study's shipped weights")
    dp = _command(dsub, "pack", cmd_demo_pack, "copy a finished build's trained weights into the study's weights "
                                               "folder, with their sha256 and recipe key (what a fresh clone starts "
                                               "from)")
    dp.add_argument("--out", help="folder (default: the study's [study] weights)")


def _add_training(sub) -> None:
    t = _command(sub, "train", cmd_train, "train encoders from the study's [train.*] recipes", check=_check_recipes)
    t.add_argument("name", nargs="*", help="recipe names (default: all, in dependency order)")
    t.add_argument("--steps", type=int, help="override the recipe's step count")
    g = _command(sub, "train-gan", cmd_train_gan, "train the conditional DCGAN of a generative arm",
                 check=_check_gan_arm)
    g.add_argument("--arm", default="generative")
    g.add_argument("--steps", type=int)


def _add_recommending(sub) -> None:
    for name, func, helptext in (("recommend", cmd_recommend, "four items from a retrieval arm"),
                                 ("generate", cmd_generate, "four images from a generative arm")):
        r = _command(sub, name, func, helptext, check=_check_arm,
                     json_help="print a JSON list of the four items for scripts")
        r.add_argument("--arm", required=True, help="an arm name of the study file")
        r.add_argument("--text", default="")
        r.add_argument("--image", action="append", help="a photo of clothes you like (repeatable)")
        r.add_argument("--gender", choices=["menswear", "womenswear"])
        r.add_argument("--avoid", action="append", help="a colour to avoid (repeatable)")
        r.add_argument("--seed", type=int, default=0)
        r.add_argument("--out", help="where to write the grid PNG (recommend) or the images (generate)")


def _add_evaluate(sub) -> None:
    e = _command(sub, "evaluate", cmd_evaluate, "model-selection metrics (Table 1, PCA, top-k, participant "
                                                "queries)", check=_check_encoders)
    e.add_argument("--encoders", nargs="*", help="encoder names from the study file (default: all)")
    e.add_argument("--split", default="test")
    e.add_argument("--queries", help="participant-language query file (default: assets/queries.tsv)")
    e.add_argument("--out", default="results/model-selection")
    e.add_argument("--pca-n", type=int, default=500)
    e.add_argument("--parts", nargs="*", choices=["table1", "topk", "queries", "fusion", "photos"],
                   help="which parts to run (default: all)")
    e.add_argument("--photos", help="folder of real photos used as a participant's uploads (default: assets/photos)")
    e.add_argument("--inshop", help="In-shop Clothes Retrieval folder (default: the catalogue's inshop/ subfolder)")


def _add_publish(sub) -> None:
    pb = _command(sub, "publish", cmd_publish, "upload a trained encoder (a local: folder) to a Hub model repo and "
                                               "print the spec that names it (hf-hub:, transformers: or hub-local:)")
    pb.add_argument("encoder", help="the local: folder, or an encoder name of the study file")
    pb.add_argument("--repo", required=True, help="USER/NAME (or ORG/NAME) of the model repo")
    vis = pb.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="public", action="store_false", help="a private repo (default)")
    vis.add_argument("--public", dest="public", action="store_true", help="a public repo")
    pb.add_argument("--endpoint", help="the Hub's URL (default: $HF_ENDPOINT or huggingface.co)")
    pb.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding a write token "
                                                            "(default HF_TOKEN; else the saved `hf auth login`)")
    pb.set_defaults(public=False)


def _add_checks(sub) -> None:
    ss = _command(sub, "subset", cmd_subset, "draw the study's [catalogue] subset (the paper's 14k/2k/4k) into "
                                             "its cache", json_help="print the file, its key and the counts as JSON")
    _command(sub, "doctor", cmd_doctor, "would the study run here? weights, catalogue, GPU, storage, secrets (no "
                                        "downloads); exit 0 only when ready",
             json_help="print a JSON list of checks (arm/what/ok/level/detail/fix)")
    sc = _command(sub, "schema", cmd_schema, f"write the study file's JSON Schema ({SCHEMA_PATH.name}, for TOML "
                                             "editors) from dressup.study_schema")
    sc.add_argument("--out", help=f"where to write it (default: {SCHEMA_PATH})")
    sc.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is out of date")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dressup", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"dressup {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_training, _add_recommending, _add_evaluate, _add_publish, _add_checks):
        add(sub)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a researcher causes, printed as one line; ``ArmLoadError`` only once dressup.arms (torch) is loaded."""
    arms = sys.modules.get("dressup.arms")
    arm_error = getattr(arms, "ArmLoadError", None)
    return (StudyFileError, FileNotFoundError, ArgumentError) + ((arm_error,) if arm_error else ())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.stdout = sys.stdout
    try:
        with _stdout_to_stderr(args):
            if args.preflight is not None:
                args.preflight(args)
            return args.func(args)
    except Exception as e:  # noqa: BLE001 — a researcher's mistake becomes one line; anything else is re-raised
        library = isinstance(e, ValueError) and type(e).__module__.startswith("dressup")  # ImageError, CatalogError...
        if not (library or isinstance(e, _user_errors())):
            raise
        print(f"error: {e}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(e)}), file=args.stdout)
        return 2
