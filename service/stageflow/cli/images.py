"""Images from the command line: set a tag or digest in the first stage (a build's deploy)."""

from __future__ import annotations

import re

import click

from stageflow.cli.connection import Api
from stageflow.cli.options import client_command
from stageflow.cli.output import emit_done

_IMAGE = re.compile(
    r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def _first_stage(api: Api) -> str:
    return str(api.get("/pipeline")["stages"][0]["name"])


@click.group()
def images() -> None:
    """Set image tags (the build pipeline's deploy into the first stage)."""


@images.command("set")
@click.argument("app")
@click.argument("image", metavar="NAME:TAG|NAME@DIGEST")
@click.option("--stage", metavar="STAGE", help="Only the first stage takes images [first].")
@client_command
def images_set(api: Api, fmt: str, app: str, image: str, stage: str | None) -> int:
    """Set an image's tag (or digest) in the first stage; later stages get it by promotion.

    \b
    Example:
      stageflow images set demo ghcr.io/acme/demo:1.5.0
    """
    found = _IMAGE.match(image)
    if not found or not (found.group("tag") or found.group("digest")):
        raise click.BadParameter(
            f"{image!r}: write NAME:TAG or NAME@sha256:<64 hex>", param_hint="IMAGE"
        )
    body = {"name": found.group("name")}
    if found.group("tag"):
        body["tag"] = found.group("tag")
    if found.group("digest"):
        body["digest"] = found.group("digest")
    stage = stage or _first_stage(api)
    answer = api.call("PUT", f"/apps/{app}/stages/{stage}/images", body=body)
    return emit_done(fmt, answer, f"{app}/{stage} runs {image} once the cluster syncs")


COMMANDS = (images,)
