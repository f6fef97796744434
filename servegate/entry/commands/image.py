"""``servegate image build base|mlserver|kserve``: servegate's own images for the container backend.

``base`` is a Debian minbase image from debootstrap (for machines with no registry); ``mlserver``
and ``kserve`` are runtime images made from the local envs' pinned requirements, with the
official images' entry point, ports and model mount. pip inside the build uses the host's pip
configuration (CA bundle, indexes, wheel folders, constraints) unless told otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from servegate.entry.commands.common import log as _log

WHAT = ("base", "mlserver", "kserve")


def register(sub: argparse._SubParsersAction) -> None:
    image = sub.add_parser("image", help="build servegate's base and runtime images")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser(
        "build",
        help="build an image: base (debootstrap, root), mlserver or kserve (from the pins)",
        description=__doc__,
    )
    build.add_argument("what", choices=WHAT, help="which image")
    build.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu (default) or cuda: the runtime's CPU or CUDA build of its pins",
    )
    build.add_argument(
        "--base",
        default=None,
        metavar="IMAGE",
        help="image to install into (default python:3.11-slim; any image with Python 3.11 "
        "or with apt-get, e.g. servegate/base:bookworm)",
    )
    build.add_argument(
        "--tag",
        default=None,
        help="image name (default servegate/<runtime>:<device>, servegate/base:bookworm)",
    )
    build.add_argument(
        "--force", action="store_true", help="rebuild even when the image's pins are unchanged"
    )
    build.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="base only: debootstrap's Debian mirror",
    )
    pip = build.add_argument_group(
        "package sources (default: the host's pip configuration, `pip config list`, PIP_*)"
    )
    pip.add_argument("--cert", default=None, metavar="FILE", help="CA bundle pip trusts")
    pip.add_argument(
        "--index-url", default=None, metavar="URL", help="package index (default: the host's)"
    )
    pip.add_argument(
        "--extra-index-url",
        action="append",
        default=[],
        metavar="URL",
        help="another package index; repeatable",
    )
    pip.add_argument(
        "--find-links", action="append", default=[], metavar="DIR|URL", help="extra wheel folders"
    )
    pip.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="FILE",
        help="a pip constraints file, applied to the install; repeatable",
    )
    pip.add_argument(
        "--no-host-pip-config",
        action="store_true",
        help="ignore the host's pip configuration (only the options above)",
    )
    pip.add_argument(
        "--pip-cache",
        default=None,
        metavar="DIR",
        help="pip's download cache, kept across builds (default: the host's `pip cache dir`)",
    )
    pip.add_argument(
        "--torch-index",
        default=None,
        metavar="URL",
        help="extra index for torch (default for cpu: PyTorch's CPU wheels when that index "
        "answers; '' for none)",
    )
    build.set_defaults(func=cmd_image_build)


def cmd_image_build(args: argparse.Namespace) -> int:
    from servegate.reference_servers import image_build, pip_config
    from servegate.reference_servers import image_recipes as recipes

    logs_dir = Path(args.reports_dir) / "logs"
    if args.what == "base":
        if args.base is not None:
            _log("servegate image build base: --base applies to runtime images; ignored")
        result = image_build.build_base(
            tag=args.tag or recipes.BASE_TAG,
            mirror=args.mirror,
            work_dir=Path(args.state_dir) / "image-build",
            log_path=logs_dir / "image-base.log",
            force=args.force,
            log=_log,
        )
        _log(result.line())
        return 0
    sources = (
        pip_config.PipSources() if args.no_host_pip_config else pip_config.host_sources()
    ).merged(
        {
            "cert": [args.cert] if args.cert else [],
            "index-url": [args.index_url] if args.index_url else [],
            "extra-index-url": args.extra_index_url,
            "find-links": args.find_links,
            "constraint": args.constraint,
        }
    )
    cache = Path(args.pip_cache) if args.pip_cache else pip_config.host_cache_dir()
    build = image_build.RuntimeBuild(
        runtime=args.what,
        device=args.device,
        base=args.base or recipes.DEFAULT_BASE,
        tag=args.tag,
        torch_index=args.torch_index,
        force=args.force,
    )
    result = image_build.build_runtime(
        build,
        sources=sources,
        cache_dir=cache,
        log_path=logs_dir / f"image-{args.what}-{args.device}.log",
        log=_log,
    )
    _log(result.line())
    return 0
