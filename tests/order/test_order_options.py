"""OrderOptions: the one definition of the training-order options, from which the CLI flags and the service's
order settings are generated."""

from __future__ import annotations

from dataclasses import fields

import pytest

from api.settings import Settings, order_settings
from cli.main import build_parser
from cli.order_options import flag_of, order_argv, order_options_from_args
from pile_index.errors import ConfigError
from pile_index.order import PRESETS, OrderOptions
from pile_index.order.options import setting_name


def test_options_validate_themselves():
    with pytest.raises(ConfigError, match="`seed`: expected an integer, found '1'"):
        OrderOptions(seed="1")
    with pytest.raises(ConfigError, match="`batch_size`: expected an integer, found True"):
        OrderOptions(batch_size=True)
    with pytest.raises(ConfigError, match="`preshuffled`: expected true or false"):
        OrderOptions(preshuffled=None)
    with pytest.raises(ConfigError, match="preset 'gpt3' is unknown"):
        OrderOptions(preset="gpt3")
    assert not OrderOptions().given and OrderOptions(preshuffled=True).given and OrderOptions(seed=0).given
    assert OrderOptions(preset="pythia", batch_size=8).config() == PRESETS["pythia"].__class__(
        **{**PRESETS["pythia"].__dict__, "batch_size": 8})
    assert OrderOptions(preshuffled=True, seq_length=3).config(n_items=7).num_samples == 7


def _leaf(parser, *names):
    for name in names:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("command", [("sample",), ("order", "build"), ("ngram", "steps"), ("serve",), ("score",)])
def test_cli_flags_are_generated_from_the_fields(command):
    parser = _leaf(build_parser(), *command)
    by_flag = {s: a for a in parser._actions for s in a.option_strings}
    for f in fields(OrderOptions):
        action = by_flag[flag_of(f.name)]
        assert action.dest == f.name and action.help == f.metadata["help"]
    assert by_flag["--preset"].choices == tuple(sorted(PRESETS))


def test_service_settings_are_generated_from_the_fields():
    helps = Settings.describe()
    defaults = {f.name: f.default for f in fields(Settings)}
    for f in fields(OrderOptions):
        assert helps[setting_name(f)] == f.metadata["help"] and defaults[setting_name(f)] == f.default
    opts = OrderOptions(seed=3, seq_length=8, num_samples=20, batch_size=2, train_steps=5)
    assert Settings(**order_settings(opts)).order_options() == opts
    assert order_settings(OrderOptions(preset="pythia"))["order_preset"] == "pythia"


def test_argv_round_trip():
    opts = OrderOptions(seed=1234, seq_length=128, num_samples=99, batch_size=16, train_steps=4)
    argv = order_argv(opts)
    assert argv == ["--seed", "1234", "--seq-length", "128", "--num-samples", "99", "--batch-size", "16",
                    "--train-steps", "4"]  # what the demo prints and runs
    for o in (opts, OrderOptions(preset="pythia", name="x", preshuffled=True)):
        args = build_parser().parse_args(["sample", "P", "--step", "0", "--slot", "0", *order_argv(o)])
        assert order_options_from_args(args) == o
