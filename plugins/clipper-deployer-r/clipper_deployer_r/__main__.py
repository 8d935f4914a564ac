"""``python -m clipper_deployer_r``: what the Rclipper R package asks of the Python side.

Starting replicas and building images is the container manager's work, so Rclipper's
``clipper_connection``, ``deploy_model``, ``deploy_r_function`` and ``build_model`` run
these commands::

    connect           print the cluster's addresses and management token as JSON
    deploy            deploy an .rds saved by Rclipper::save_model (deploy_r_model)
    deploy-image      deploy an image or model directory (ClipperConnection.deploy_model)
    build             build the Docker image <cluster>-<name>:<version> of an .rds
    install-rclipper  install this plugin's Rclipper into its R library (image builds)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from clipper_core.exceptions import ClipperError
from clipper_deployer_r import deploy_r_model
from clipper_deployer_r.deployer import RDeployer, rclipper_library, write_r_bundle


def _manager(args: argparse.Namespace):
    from clipper_admin import DockerContainerManager, LocalContainerManager

    if args.backend == "local":
        return LocalContainerManager(cluster_name=args.cluster_name, cluster_dir=args.cluster_dir)
    if args.backend == "docker":
        return DockerContainerManager(cluster_name=args.cluster_name)
    msg = f"backend must be local or docker, got {args.backend!r}"
    raise ClipperError(msg)


def _connection(args: argparse.Namespace):
    from clipper_admin import ClipperConnection

    conn = ClipperConnection(_manager(args))
    conn.connect()
    return conn


def cmd_connect(args: argparse.Namespace) -> None:
    cm = _connection(args).cm
    print(json.dumps({"management": cm.get_admin_addr(), "query": cm.get_query_addr(),
                      "token": getattr(cm, "management_token", None)}))


def cmd_deploy(args: argparse.Namespace) -> None:
    deploy_r_model(_connection(args), args.name, args.version, args.rds, args.input_type,
                   num_replicas=args.num_replicas, batch_size=args.batch_size)


def cmd_deploy_image(args: argparse.Namespace) -> None:
    _connection(args).deploy_model(args.name, args.version, args.input_type, args.image,
                                   num_replicas=args.num_replicas, batch_size=args.batch_size)


def cmd_build(args: argparse.Namespace) -> None:
    from clipper_admin import ClipperConnection

    conn = ClipperConnection(_manager(args))
    with tempfile.TemporaryDirectory(prefix=f"clipper-{args.name}-") as tmp:
        write_r_bundle(Path(tmp), args.rds)
        image = conn.build_model(args.name, args.version, tmp,
                                 conn.cm.default_base_image(RDeployer.name), args.registry)
    print(image)


def cmd_install_rclipper(args: argparse.Namespace) -> None:
    print(rclipper_library())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipper_deployer_r", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default="local", help="local or docker")
    common.add_argument("--cluster-name", default="default-cluster")
    common.add_argument("--cluster-dir", default=None, help="local backend: cluster directory")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--name", required=True)
    model.add_argument("--version", required=True)
    replicas = argparse.ArgumentParser(add_help=False)
    replicas.add_argument("--num-replicas", type=int, default=1)
    replicas.add_argument("--batch-size", type=int, default=-1)

    sub.add_parser("connect", parents=[common]).set_defaults(func=cmd_connect)
    deploy = sub.add_parser("deploy", parents=[common, model, replicas])
    deploy.add_argument("--rds", required=True)
    deploy.add_argument("--input-type", default=None)
    deploy.set_defaults(func=cmd_deploy)
    image = sub.add_parser("deploy-image", parents=[common, model, replicas])
    image.add_argument("--input-type", required=True)
    image.add_argument("--image", required=True)
    image.set_defaults(func=cmd_deploy_image)
    build = sub.add_parser("build", parents=[common, model])
    build.add_argument("--rds", required=True)
    build.add_argument("--registry", default=None)
    build.set_defaults(func=cmd_build)
    sub.add_parser("install-rclipper").set_defaults(func=cmd_install_rclipper)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ClipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
