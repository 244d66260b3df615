"""Hydra for the config-driven commands: compose a conf of ours with key=value overrides
in-process (no output folder, no chdir, hooks stay callable), and print a conf's keys with
their defaults for --help. Hydra's and OmegaConf's errors become one ConfigError line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config import config_dir, register_resolvers
from ..errors import ConfigError, one_line

HELP_FLAGS = ("-h", "--help", "help")


def wants_help(argv: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def refuse_flags(overrides: list[str], job_name: str) -> None:
    """A --flag among key=value overrides is one line naming the key=value to write instead."""
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        key = flags[0].lstrip("-").split("=", 1)[0].replace("-", "_")
        raise ConfigError(f"{flags[0]}: `lightning-gans {job_name}` takes key=value overrides, e.g. {key}=... "
                          f"(see `lightning-gans {job_name} --help`)")


def compose(config_name: str, overrides: list[str], job_name: str, folder: Path | None = None) -> DictConfig:
    """<folder or the train conf>/<config_name>.yaml with `overrides` applied; a bad key or value
    is one line. The confs of commands (evaluate, finetune: COMMANDS_FOLDER) are a Hydra root of
    their own, where `data=DIR` is a key, not a choice of train's `data/` config group, and that
    train's --help does not list as a config group."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    refuse_flags(overrides, job_name)
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(folder or config_dir()), job_name=job_name):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"{job_name}: {hydra_error_line(e)} (see `lightning-gans {job_name} --help`)") from None


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's composition error as one line; a missing group option keeps its whole list of
    options (Hydra prints them one a line, which one_line would cut to the first)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("Available options in"):
            options = [o for o in lines[i + 1:] if not o.startswith(("Config search path", "provider="))]
            return "; ".join(lines[:i]) + f"; {line.rstrip(':')}: {', '.join(options) or 'none'}"
    return one_line(exc)


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists that cover a sweep's values (`-m key=a,b other=x,y`, `group=glob(p*)`):
    every value of every swept key once, the other swept keys at their first value (a sum of
    values, not the product a sweep runs: enough to find a bad key, value or group option before
    any job starts). Hydra's own parser, given train's config loader, lists a glob's options."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name="train"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            per_key = []
            for o in parser.parse_overrides(list(overrides)):
                key = o.get_key_element()
                if o.is_sweep_override() and not o.is_discrete_sweep():
                    return []  # interval(): an optimizing sweeper's, which picks the values itself
                values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
                if not values:
                    return []  # a glob that matches nothing: the sweep runs no job
                per_key.append([f"{key}={v}" for v in values])
    except HydraException as e:
        raise ConfigError(f"train: {one_line(e)} (see `lightning-gans train --help`)") from None
    first = [values[0] for values in per_key]
    jobs = [first]
    for i, values in enumerate(per_key):
        jobs += [first[:i] + [v] + first[i + 1:] for v in values[1:]]
    return jobs


def usage(name: str, doc: str, helps: dict[str, str], example: str, more: str = "") -> str:
    """--help of a command with a conf of its own: its docstring, every key of
    commands/conf/<name>.yaml with its default and help (plus `more` lines), one example."""
    rows = []
    for key, value in conf_defaults(name).items():
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else \
            str(value).replace(" ", "")
        rows.append(f"  {key + '=' + shown:<28} {helps.get(str(key), '')}".rstrip())
    keys = "\n".join(rows + ([more] if more else []))
    return (f"{doc.strip()}\n\nkeys (commands/conf/{name}.yaml; key=default):\n{keys}\n\n"
            f"example:\n  {example}")


# ------------------------------------------------ a command's own conf (evaluate, finetune)

COMMANDS_FOLDER = Path(__file__).resolve().parent / "conf"  # lightning_gans/commands/conf/<name>.yaml


def override_key(token: str) -> str | None:
    """The key a key=value override sets (None for a token that is not one, e.g. a flag)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if token.startswith("-") or "=" not in token:
        return None
    try:
        return OverridesParser.create().parse_overrides([token])[0].key_or_group
    except HydraException:
        return token.lstrip("+~").split("=", 1)[0]


def conf_defaults(name: str) -> dict[str, Any]:
    """The keys of commands/conf/<name>.yaml with their defaults."""
    return OmegaConf.to_container(compose(name, [], name, COMMANDS_FOLDER), resolve=False)


def options(name: str, overrides: list[str], types: dict[str, type]) -> dict[str, Any]:
    """commands/conf/<name>.yaml with `overrides` (Hydra syntax, key=value; lists as [a,b]) as a
    plain dict, each value None or of its type in `types` (an int is a float, a number given
    for a text key is its text, a single value is a one-item list). An unknown key or a value of
    the wrong type is one ConfigError line naming the key and what is known."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    refuse_flags(overrides, name)
    known = list(conf_defaults(name))
    for token in overrides:
        if "=" not in token:
            raise ConfigError(f"{name}: {token!r} is not key=value (see `lightning-gans {name} --help`)")
        try:
            key = OverridesParser.create().parse_overrides([token])[0].key_or_group
        except HydraException as e:
            raise ConfigError(f"{name}: {token!r} is not a valid override ({one_line(e, 1)}); a list is "
                              "key=[a,b], a value with brackets or commas is quoted: key='a,b'") from None
        if key not in known:
            raise ConfigError(f"{name}: unknown key {key!r} in {token!r}; known: {', '.join(known)} "
                              f"(see `lightning-gans {name} --help`)")
    values = OmegaConf.to_container(compose(name, overrides, name, COMMANDS_FOLDER), resolve=True)
    for key, want in types.items():
        v = values.get(key)
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if v is None or (isinstance(v, want) and not (want is int and isinstance(v, bool))):
            continue
        if want is float and number:
            values[key] = float(v)
        elif want is str and number:
            values[key] = str(v)
        elif want is list and isinstance(v, (str, int, float)):
            values[key] = [v]
        else:
            kind = {int: "an integer", float: "a number", bool: "true or false", str: "a text",
                    list: "a list [a,b]"}.get(want, want.__name__)
            raise ConfigError(f"{name}: {key}={v!r} is not {kind} (see `lightning-gans {name} --help`)")
    return values
