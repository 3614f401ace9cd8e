"""Settings are declared once: flags, presets and grids come from the declarations, and bad values
are one-line errors with the valid names."""
import dataclasses

import pytest

from selfadapt.cli import build_parser, main
from selfadapt.config.run import RunConfig, declared_settings, differing_settings, option_fields, parse_text
from selfadapt.errors import SelfAdaptError
from selfadapt.grid.presets import describe_presets, load_preset, preset_names
from selfadapt.objectives.registry import get_method, methods


def test_every_setting_and_option_is_a_flag_with_its_default_in_the_help():
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    text = " ".join(train.format_help().split())
    flags = {o for action in train._actions for o in action.option_strings}
    for name, (_, f) in declared_settings().items():
        assert "--" + name.replace("_", "-") in flags, name
    for name in option_fields():
        assert "--" + name.replace("_", "-") in flags, name
    assert "default resnet34" in text and "default 200" in text and "required" in text
    assert "selfadapt train --dataset digits" in text, "the help shows runnable examples"


def test_flat_names_round_trip_through_the_nested_config():
    config = RunConfig.from_flat({"dataset": "digits", "model": "mlp", "method": "gce", "gce_q": 0.5,
                                  "noise": "symmetric", "noise_rate": 0.2, "milestones": [3, 5], "schedule": "multistep"})
    assert config.method.options == {"gce_q": 0.5} and config.engine.milestones == [3, 5]
    again = RunConfig.from_dict(config.to_dict())
    assert again == config and differing_settings(again.to_dict(), config.to_dict()) == []
    assert config.eval.evaluators == ["accuracy", "memorisation"], "memorisation joins under injected label noise"


def test_every_method_option_has_a_default_a_help_and_is_checked():
    for method in methods().values():
        defaults = method.parse()
        for f in dataclasses.fields(method.options):
            assert f.metadata.get("help"), (method.name, f.name)
            assert getattr(defaults, f.name) == method.default(f.name)


@pytest.mark.parametrize("values,message", [
    ({"method": "gce", "gce_qq": 0.5}, "unknown setting 'gce_qq' (did you mean 'gce_q'?)"),
    ({"method": "sat", "gce_q": 0.5}, "gce_q is an option of method gce, not of method 'sat'"),
    ({"method": "gce", "gce_q": "0.5"}, "gce_q must be float, got '0.5'"),
    ({"method": "gce", "gce_q": 0.0}, "gce_q must lie in (0, 1]"),
    ({"epochs": True}, "epochs must be int"),
    ({"noise_rate": 0.4}, "--noise-rate 0.4 given without --noise"),
    ({"noise": "symmetric"}, "--noise symmetric needs --noise-rate > 0"),
    ({"schedule": "multistep"}, "--schedule multistep needs --milestones"),
    ({"evaluators": ["accuracy", "nope"]}, "unknown evaluator 'nope'"),
    ({"method": "coteaching"}, "give --coteaching-forget-rate"),
    ({"epochs": 10, "sat_start_epoch": 60}, "SAT starts at epoch 60 (0-based) but the run has only 10 epochs"),
])
def test_bad_values_are_one_line_errors(values, message):
    with pytest.raises(SelfAdaptError) as info:
        RunConfig.from_flat(values)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_command_line_text_is_parsed_by_the_declared_type():
    assert parse_text("noise_rate", "0.4") == 0.4 and parse_text("milestones", "75,90") == [75, 90]
    assert parse_text("width", "none") is None and parse_text("amp", "false") is False
    with pytest.raises(SelfAdaptError, match="epochs must be int, got 'ten'"):
        parse_text("epochs", "ten")


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_a_valid_run(name):
    RunConfig.from_flat(load_preset(name))


def test_presets_carry_the_papers_numbers(capsys):
    papers = {name: paper for name, _, paper in describe_presets()}
    assert papers["cifar10:sat-symmetric-0.4"] == {"test_accuracy": 92.64}
    assert main(["presets"]) == 0
    assert "cifar10:sat-symmetric-0.4" in capsys.readouterr().out


def test_methods_lists_each_option_with_its_default(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "gce: generalized cross-entropy" in out and "--gce-q 0.7" in out and "--sat-start-epoch auto" in out
    assert main(["evaluators"]) == 0
    assert "--memorisation-every 10" in capsys.readouterr().out
    assert get_method("ce").outputs(10) == 10
