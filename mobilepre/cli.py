"""The `mobilepre` command line: parse arguments, call one library function, print its result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mobilepre import __version__
from mobilepre.errors import EXIT_BAD_INPUT, MobilepreError

app = typer.Typer(
    name="mobilepre",
    help="Preprocessing inside Keras image models, compression, drift validation and size-budgeted bundles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        typer.echo(f"mobilepre {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    """Exit codes: 0 success, 1 a budget, tolerance or integrity check failed, 2 bad input or usage."""


def _emit(result, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        typer.echo(result.to_text())


@app.command()
def frontend(
    out: Annotated[Path, typer.Option("--out", help="Where to write the front-end model (.keras).")],
    input_shape: Annotated[str, typer.Option(help="Image size the front-end takes, H,W,C.")] = "224,224,3",
    sigma: Annotated[float, typer.Option(help="Sigma, in pixels, of the initial Gaussian denoise kernel.")] = 1.0,
    denoise: Annotated[bool, typer.Option("--denoise/--no-denoise", help="Include the 3x3 noise-reduction stage.")] = True,
    features: Annotated[
        str, typer.Option(help="Feature-extraction convolutions as FILTERS:KERNEL pairs, or 'none'.")
    ] = "16:5,32:3",
    normalize: Annotated[
        str, typer.Option(help="batchnorm (default), sigmoid (1x1 conv + sigmoid, the weaker choice) or none.")
    ] = "batchnorm",
    l2: Annotated[float, typer.Option(help="L2 regularisation factor of the denoise kernel.")] = 0.01,
    uint8_input: Annotated[
        bool,
        typer.Option("--uint8-input/--float-input", help="Take raw 0..255 uint8 pixels and rescale inside the model."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Build the convolutional preprocessing front-end as a Keras model."""
    from mobilepre.frontend import FrontendSpec, Normalization, parse_features, parse_input_shape
    from mobilepre.frontend import write_frontend

    if normalize not in {n.value for n in Normalization}:
        raise MobilepreError(f"--normalize {normalize!r}: expected one of batchnorm, sigmoid, none")
    spec = FrontendSpec(
        input_shape=parse_input_shape(input_shape),
        uint8_input=uint8_input,
        denoise=denoise,
        sigma=sigma,
        l2=l2,
        features=parse_features(features),
        normalize=Normalization(normalize),
    )
    _emit(write_frontend(spec, out), as_json)


def main() -> None:
    """Entry point: one line and a documented exit code for every user mistake."""
    try:
        app()
    except MobilepreError as error:
        typer.echo(f"mobilepre: error: {error.message}", err=True)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
