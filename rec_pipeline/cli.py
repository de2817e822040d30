"""`rec-pipeline`: the project's commands.

    rec-pipeline demo [--data default|online-retail]   materialise every asset through Dagster and summarise
    rec-pipeline generate --out DIR [--seed N]         write the embedded default data (canonical JSONL)
    rec-pipeline generate --out DIR --append-day       add the next day of logs to it
    rec-pipeline validate --events P --catalog P       check your own data against the rules, without Dagster
    rec-pipeline evaluate --data online-retail|default [--cuts D1,D2 --weeks 4] [--seed N] --json
                                                       the evaluation protocol at each cut: ranker against EASE, ALS,
                                                       content-kNN and popularity, by segment
    rec-pipeline recommend --user ID | --items A,B [--k 10]
                                                       top K from the registered ONNX ranker, with titles
    rec-pipeline lineage VERSION|RUN_ID [--json]       a model's chain back to the raw data's DVC md5 and the git commit
    rec-pipeline serve [--host H] [--port P] [--workers N] [--store sqlite|redis://...]
                                                       the real-time service (FastAPI on uvicorn)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from rec_pipeline.schema import FORMATS


def _project_root() -> Path:
    """The checkout holding workspace.yaml: the current folder or one above it."""
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "workspace.yaml").exists() and (folder / "orchestration").is_dir():
            return folder
    sys.exit("rec-pipeline demo runs inside a rec_pipeline checkout (a folder with workspace.yaml and orchestration/).")


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    # The Dagster wiring lives in the checkout's orchestration/, not in this library, so it runs as its own module there.
    return subprocess.call([sys.executable, "-m", "orchestration.run", *rest], cwd=_project_root())


def _generate(args: argparse.Namespace) -> int:
    from rec_pipeline.generate import GeneratorConfig, append_day, generate

    config = GeneratorConfig.small() if args.size == "small" else GeneratorConfig()
    sizes = {"n_items": args.items, "n_users": args.users, "n_events": args.events, "days": args.days}
    config = GeneratorConfig(**{**config.__dict__, "seed": args.seed, **{k: v for k, v in sizes.items() if v is not None}})
    if args.append_day:
        try:
            written = append_day(args.out, config)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(json.dumps({"appended": str(written), "events": len(written.read_text().splitlines())}))
        return 0
    summary = generate(args.out, config, overwrite=args.overwrite)
    print(json.dumps(summary, default=str))
    return 0


def _validate(args: argparse.Namespace) -> int:
    import secrets
    import shutil
    import tempfile

    from rec_pipeline.engines import make_engine
    from rec_pipeline.engines.layout import TableFolders, partitions, raw_files
    from rec_pipeline.engines.steps import ValidationJob
    from rec_pipeline.schema import DataFormatError
    from rec_pipeline.storage import read_table
    from rec_pipeline.validation import ValidationSettings

    conf = _spark_conf(args.spark_conf)
    if conf is None:
        return 2
    settings = ValidationSettings()
    out = args.out or Path(tempfile.mkdtemp(prefix="rec_pipeline_validate_"))
    spark = None
    if args.engine == "spark":
        from rec_pipeline.engines.standalone import start_session

        spark = start_session(conf)
    engine = make_engine(args.engine, spark)
    report = {}
    try:
        catalog = engine.validate(ValidationJob("catalog", args.format, tuple(raw_files(args.catalog, partitioned=False)), settings,
                                                TableFolders.under(out, "catalog", key_index=False), cache_dir=str(out / "cache")))
        files = raw_files(args.events)
        # User ids are pseudonymised before anything is written, here under a salt nobody keeps: the tables are a preview.
        events = engine.validate(ValidationJob("events", args.format, tuple(files), settings, TableFolders.under(out, "events", key_index=True),
                                               salt=args.salt or secrets.token_hex(16), cache_dir=str(out / "cache"), keep=tuple(partitions(files)),
                                               catalog=str(out / "catalog.parquet")))
        for name, result in (("catalog", catalog), ("events", events)):
            totals = result.totals()
            quarantine = read_table(result.job.folders.quarantine)
            report[name] = {
                "rows_in": totals.rows_in, "rows_valid": totals.rows_valid, "rows_quarantined": totals.rows_quarantined,
                "quarantined_by_rule": {k: v for k, v in totals.quarantined_by_rule.items() if v},
                "failures_by_rule": {k: v for k, v in totals.failures_by_rule.items() if v},
                "sample": quarantine.head(args.sample)[["rule", "source_file", "source_row", "reason"]].to_dict("records"),
            }
        report["engine"] = engine.describe()
        if args.out:
            report["tables"] = str(out)
    except DataFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if spark is not None:
            from rec_pipeline.engines.standalone import stop_session

            stop_session(spark)
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _spark_conf(pairs: list[str] | None) -> dict[str, str] | None:
    """`--spark-conf KEY=VALUE` pairs as a dict, or None (and the error printed) when one is not of that form."""
    conf = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            print(f"error: --spark-conf {pair!r}: expected KEY=VALUE (spark.master=spark://host:7077)", file=sys.stderr)
            return None
        conf[key.strip()] = value.strip()
    return conf


def _evaluate(args: argparse.Namespace) -> int:
    if args.task == "search":
        return _evaluate_search(args)
    import pandas as pd

    from rec_pipeline.datasets import DATASETS, load_dataset
    from rec_pipeline.protocol import ProtocolConfig, rolling_origin
    from rec_pipeline.sources.online_retail import shared_copy

    setup = DATASETS[args.data]
    cuts = tuple(c.strip() for c in args.cuts.split(",") if c.strip()) if args.cuts else (setup.test_start,)
    for cut in cuts:
        try:
            pd.Timestamp(cut)
        except ValueError:
            print(f"error: --cuts: {cut!r} is not an ISO date (YYYY-MM-DD)", file=sys.stderr)
            return 2
    if args.weeks is not None and args.weeks < 1:
        print(f"error: --weeks must be at least 1 (got {args.weeks})", file=sys.stderr)
        return 2
    if not 0 <= args.finetune_top_layers <= 6:
        print(f"error: --finetune-top-layers must be 0 to 6, the encoder's layers (got {args.finetune_top_layers})", file=sys.stderr)
        return 2
    online_retail = args.online_retail or shared_copy(_project_root())
    try:
        dataset = load_dataset(args.data, args.data_dir, online_retail, args.threads, args.quantization)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    config = ProtocolConfig(cuts=cuts, validation_weeks=args.validation_weeks or setup.validation_weeks, test_weeks=args.weeks,
                            seed=args.seed, threads=args.threads)
    finetune = None
    if args.finetune_top_layers:
        from functools import partial

        from rec_pipeline.finetune import FinetuneConfig

        finetune = partial(dataset.finetuned_vectors, FinetuneConfig(top_layers=args.finetune_top_layers, seed=args.seed))
    try:
        result = rolling_origin(dataset.positives, dataset.catalog_at, config, progress=lambda line: print(line, file=sys.stderr, flush=True),
                                finetune=finetune)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = {"dataset": args.data, "positive_events": list(setup.positive_events), "quantization": args.quantization,
              "finetune_top_layers": args.finetune_top_layers, **result}
    if args.json:
        print(json.dumps(report))
        return 0
    for entry in report["cuts"]:
        print(f"{args.data}, cut {entry['cut']}: " + ", ".join(f"{s} {n:,} users" for s, n in entry["segments"].items())
              + f"; {entry['split']['items']:,} items ({entry['split']['cold_items']:,} cold)")
        for name, segments in entry["models"].items():
            print(f"  {name:18s} " + "  ".join(f"{s} ndcg@20 {m['ndcg@20']:.4f}" for s, m in segments.items()))
        for name, r in entry["ratios"].items():
            print(f"  {name}: {r['ratio']:.3f}x {r['baseline']} [{r['lo']:.3f}, {r['hi']:.3f}]")
    print(f"means over {len(report['cuts'])} cut(s): " + ", ".join(f"{k} {v:.3f}x" for k, v in report["means"]["ratios"].items()))
    return 0


def _evaluate_search(args: argparse.Namespace) -> int:
    from rec_pipeline.search.protocol import evaluate_search

    try:
        report = evaluate_search(args.data_dir, threads=args.threads)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"task": "search", "searches": report["searches"], "models": {m: s["all"] for m, s in report["models"].items()},
                          "segments": report["models"], "intervals": report["intervals"], "paired": report.get("paired"),
                          "ratios": report.get("ratios", {})}))
        return 0
    print(f"search, test window from {report.get('test_start', '?')[:10]}: {report['searches']['all']:,} searches followed by a click, cart or purchase")
    for name, segments in report["models"].items():
        print(f"  {name:32s} " + "  ".join(f"{k} {v:.4f}" for k, v in segments["all"].items()))
    print(f"  ratios: {report.get('ratios', {})}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rec_pipeline.embeddings import read_encoder_settings
    from rec_pipeline.encoders import TextEncoder
    from rec_pipeline.ranker.export import ITEMS_FILE
    from rec_pipeline.ranker.live import LiveModel
    from rec_pipeline.ranker.model import season_features
    from rec_pipeline.recommend import salt_for, user_history
    from rec_pipeline.search.engine import BadQuery, SearchEngine, recommender_personal

    try:
        bundle = args.data_dir / "models" / "ranker_onnx"
        encoder_config, _ = read_encoder_settings(args.data_dir / "embeddings" / "text_encoder.json")
        encoder = TextEncoder(replace(encoder_config, threads=args.threads), onnx_dir=args.data_dir / "models")
        engine = SearchEngine.open(args.data_dir, encoder, threads=args.threads)
        history = user_history(args.data_dir / "splits" / "interactions.parquet", args.user, salt_for(args.data_dir)) if args.user else []
        live = LiveModel(bundle, json.loads((bundle / ITEMS_FILE).read_text()), args.threads)
        rows = {item_id: r + 1 for r, item_id in enumerate(live.tables.item_ids)}
        personal = recommender_personal(live, live.tables, rows, season_features(pd.to_datetime([pd.Timestamp.now(tz="UTC")])))
        query, hits = engine.search(args.query, history, args.k, personal)
    except BadQuery as err:
        print(f"error: --query: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, KeyError, LookupError, ValueError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    catalog = pd.read_parquet(args.data_dir / "validated" / "catalog.parquet", columns=["item_id", "title"]).drop_duplicates("item_id", keep="last")
    titles = dict(zip(catalog["item_id"].astype(str), catalog["title"]))
    results = [{"item_id": h.item_id, "score": h.score, "title": titles.get(h.item_id)} for h in hits]
    if args.json:
        print(json.dumps({"query": query, "history_length": len(history), "results": results}))
        return 0
    who = f"user {args.user} ({len(history)} items in their history)" if args.user else "an anonymous shopper"
    print(f"Top {len(results)} for {query!r}, for {who}:")
    for rank, r in enumerate(results, start=1):
        print(f"  {rank:>2}. {r['item_id']:<12} {r['score']:8.3f}  {r['title']}")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from rec_pipeline.ranker.export import OnnxRanker
    from rec_pipeline.recommend import salt_for, user_history, with_titles
    from rec_pipeline.registry import REGISTERED_MODEL, load_registered

    try:
        if args.model_dir:
            ranker, source = OnnxRanker.from_bundle(args.model_dir), str(args.model_dir)
        else:
            ranker, source = load_registered(args.tracking_uri, args.model or REGISTERED_MODEL)
        if args.user is not None:
            history = user_history(args.data_dir / "splits" / "interactions.parquet", args.user, salt_for(args.data_dir))
            who = f"user {args.user} ({len(history)} items in their history)"
        else:
            history = [item.strip() for item in args.items.split(",") if item.strip()]
            who = f"a new user with {len(history)} items"
        when = pd.Timestamp(args.date, tz="UTC") if args.date else None
        top = with_titles(ranker.recommend(history, args.k, when), args.data_dir / "validated" / "catalog.parquet")
    except (FileNotFoundError, KeyError, LookupError, ValueError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"model": source, "history": history, "recommendations": top.to_dict("records")}, default=float))
        return 0
    print(f"Top {len(top)} for {who}, from {source}:")
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        print(f"  {rank:>2}. {row.item_id:<12} {row.score:8.3f}  {row.title}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rec_pipeline.serving.app import serve
    from rec_pipeline.serving.service import ServiceConfig

    config = ServiceConfig(data_dir=args.data_dir, tracking_uri=args.tracking_uri, model=args.model, store=args.store,
                           open_recommend=not args.closed_recommend, threads=args.threads, watch_seconds=args.watch_seconds,
                           query_cache=args.query_cache)
    try:
        serve(config, args.host, args.port, args.workers)
    except (FileNotFoundError, LookupError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rec-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("demo", help="materialise every asset through Dagster (options: see `rec-pipeline demo --help`)", add_help=False)
    commands.add_parser("lineage", help="a model's chain back to raw data and code (see `rec-pipeline lineage --help`)", add_help=False)

    generate = commands.add_parser("generate", help="write the embedded default data")
    generate.add_argument("--out", type=Path, default=Path("data/raw"))
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--size", choices=["default", "small"], default="default", help="preset: 3k items, 2k users, 150k events, 60 days; or a test-sized one")
    generate.add_argument("--items", type=int, help="number of catalog items (overrides the preset)")
    generate.add_argument("--users", type=int, help="number of users")
    generate.add_argument("--events", type=int, help="target number of events")
    generate.add_argument("--days", type=int, help="days of logs")
    generate.add_argument("--overwrite", action="store_true", help="replace data already in --out")
    generate.add_argument("--append-day", action="store_true", help="add the next day of logs to the data set in --out (same options as it was made with)")

    validate = commands.add_parser("validate", help="run the validation rules on your data and print what would be quarantined")
    validate.add_argument("--events", required=True, type=Path)
    validate.add_argument("--catalog", required=True, type=Path)
    validate.add_argument("--format", choices=FORMATS, default="canonical")
    validate.add_argument("--sample", type=int, default=10, help="quarantined rows to show")
    validate.add_argument("--engine", choices=["local", "spark"], default="local",
                          help="local: pandas in this process; spark: a Spark session from --spark-conf (default local[*]); the same rules either way")
    validate.add_argument("--spark-conf", action="append", metavar="KEY=VALUE", help="a Spark setting (spark.master=spark://HOST:7077, spark.remote=sc://HOST)")
    validate.add_argument("--out", type=Path, help="keep the validated and quarantine tables here (default: a temporary folder, removed)")
    validate.add_argument("--salt", help="pseudonymise user ids with this salt (default: a random one; the tables are a preview)")

    evaluate = commands.add_parser("evaluate", help="run the evaluation protocol: the ranker against ALS, content-kNN and popularity; --task search: the search ranker on the test window's searches")
    evaluate.add_argument("--task", choices=["recommend", "search"], default="recommend",
                          help="search: the materialised project's search ranker and its baselines (lexical, dense, their fusion) on the test window")
    evaluate.add_argument("--data", choices=["online-retail", "default"], default="default")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--cuts", help="comma-separated ISO dates: the protocol at each (rolling origin); default: the data set's one cut")
    evaluate.add_argument("--weeks", type=int, help="test window after each cut, in weeks (default: to the end of the data)")
    evaluate.add_argument("--quantization", choices=["none", "int8"], default="none", help="the text encoder's: int8 runs its dynamically quantised ONNX export")
    evaluate.add_argument("--finetune-top-layers", type=int, default=0,
                          help="fine-tune the encoder's top N layers on the purchases before each cut (rec_pipeline.finetune); 0: the frozen encoder")
    evaluate.add_argument("--validation-weeks", type=int, help="tuning window before each cut, in weeks (default: the data set's, 4 on Online Retail)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON line")
    evaluate.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    evaluate.add_argument("--data-dir", type=Path, default=Path("data"), help="where the default data and the embedding cache live")
    evaluate.add_argument("--online-retail", type=Path, help="the UCI Online Retail file (default: ../shared/data/online_retail/ beside the checkout)")

    recommend = commands.add_parser("recommend", help="top K items from the registered ONNX ranker, for a known user or a list of items")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a known user's id as in the raw data (pseudonymised with the project's salt to look it up)")
    who.add_argument("--items", help="comma-separated item ids: a new user's history, oldest first")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store with the model registry")
    recommend.add_argument("--model", help="registered model name (default rec_pipeline_ranker): its champion, else its newest version")
    recommend.add_argument("--model-dir", type=Path, help="an exported bundle folder instead of the registry (data/models/ranker_onnx)")
    recommend.add_argument("--data-dir", type=Path, default=Path("data"), help="where data/validated and the user-id salt are")
    recommend.add_argument("--date", help="ISO date the recommendations are for (season); default today")
    recommend.add_argument("--json", action="store_true", help="print one JSON object")

    search = commands.add_parser("search", help="personalised product search on the materialised project: a query in, ranked products out")
    search.add_argument("--query", required=True)
    search.add_argument("--user", help="a known user's id as in the raw data: their history personalises the ranking")
    search.add_argument("--k", type=int, default=10)
    search.add_argument("--data-dir", type=Path, default=Path("data"))
    search.add_argument("--threads", type=int, default=1)
    search.add_argument("--json", action="store_true", help="print one JSON object")

    from rec_pipeline.registry import REGISTERED_MODEL
    from rec_pipeline.search.engine import QUERY_CACHE_SIZE

    serve = commands.add_parser("serve", help="the real-time service: /recommend, /events, /items over HTTP (OpenAPI at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (uvicorn); they share the store")
    serve.add_argument("--store", default="sqlite", help="live histories: sqlite (data/serving/live.sqlite), sqlite:///PATH or redis://HOST:PORT/DB")
    serve.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store with the model registry")
    serve.add_argument("--model", default=REGISTERED_MODEL, help="registered model: its champion is served (the newest version where none is set)")
    serve.add_argument("--data-dir", type=Path, default=Path("data"), help="where data/splits, data/validated, data/raw and the salt are")
    serve.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per worker")
    serve.add_argument("--watch-seconds", type=float, default=5.0, help="how often the champion alias is checked")
    serve.add_argument("--closed-recommend", action="store_true", help="/recommend and /search need the bearer token too")
    serve.add_argument("--query-cache", type=int, default=QUERY_CACHE_SIZE, help="query vectors kept per worker for /search (0: none)")

    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        return _demo(args, rest)
    if args.command == "lineage":
        return subprocess.call([sys.executable, "-m", "orchestration.lineage", *rest], cwd=_project_root())
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return {"generate": _generate, "validate": _validate, "evaluate": _evaluate, "recommend": _recommend, "search": _search, "serve": _serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
