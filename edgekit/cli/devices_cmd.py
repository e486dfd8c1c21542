"""`edgekit devices`: the device inventory (add, list, show, remove, trust) and check / setup."""

from __future__ import annotations

import click

from edgekit.cli.options import json_option
from edgekit.devices.targets.ssh import parse_ssh_address

config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Inventory file (default: $EDGEKIT_CONFIG, $EDGEKIT_HOME/devices.toml or the user config dir).",
)


def _cfg(ctx: click.Context, config: str | None) -> str | None:
    return config or (ctx.obj or {}).get("config")


@click.group()
@config_option
@click.pass_context
def devices(ctx: click.Context, config) -> None:
    """Register devices once (SSH, adb or this machine), then check, set up and use them by name.

    \b
    Example:  edgekit devices add pi --ssh pi@raspberrypi.local --identity ~/.ssh/id_ed25519
              edgekit devices check pi && edgekit devices setup pi
    """
    ctx.obj = {"config": config}


def _spec_dict(spec) -> dict:
    d = {
        "name": spec.name,
        "kind": spec.kind,
        "address": spec.address,
        "identity": spec.identity,
        "python": spec.python,
        "workdir": spec.workdir,
        **spec.options,
    }
    if spec.kind == "ssh" and spec.options.get("host_keys"):
        from edgekit.devices.targets.ssh import fingerprint

        d["host_key_fingerprints"] = [fingerprint(k) for k in spec.options["host_keys"]]
    return d


def _accept_host_keys(name: str, host: str, port: int, *, host_key, known_hosts, yes: bool, as_json: bool):
    """The keys to record for a new SSH device, and where they came from. Never accepts silently."""
    from edgekit.devices.targets.ssh import fingerprint, keyscan, known_hosts_keys
    from edgekit.errors import HostKeyError

    if host_key:
        keys = sorted({" ".join(k.split()[:2]) for k in host_key})
        for k in keys:
            fingerprint(k)  # validates
        return keys, "given with --host-key"
    keys = known_hosts_keys(host, port, known_hosts)
    if keys:
        return keys, f"taken from {known_hosts or '~/.ssh/known_hosts'}"
    keys = keyscan(host, port)
    prints = "\n".join(f"  {fingerprint(k)}" for k in keys)
    click.echo(f"The host key of {host}:{port} is not known yet. It offers:\n{prints}", err=True)
    if yes:
        return keys, "accepted with --yes"
    import sys

    if not sys.stdin.isatty():
        raise HostKeyError(
            f"host key of {host}:{port} not accepted: nobody to ask",
            hint="compare the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the device, "
            "then re-run with --yes (or pass --host-key)",
        )
    if not click.confirm(f"Record this key for device {name!r}?", default=False, err=True):
        raise HostKeyError(f"host key of {host}:{port} was not accepted; device {name!r} not added")
    return keys, "accepted interactively"


@devices.command("add")
@click.argument("name")
@click.option(
    "--ssh", "ssh_addr", metavar="USER@HOST[:PORT]", default=None, help="A device reached over SSH."
)
@click.option("--adb", "adb_serial", metavar="SERIAL", default=None, help="An Android device over adb.")
@click.option("--local", "local", is_flag=True, help="This machine, under a name of its own.")
@click.option("--identity", "-i", type=click.Path(dir_okay=False), default=None, help="SSH private key file.")
@click.option("--python", "python", default=None, help="Python on the device [python3; a venv after setup].")
@click.option("--workdir", default=None, help="Folder on the device for bundles and scripts [~/edgekit].")
@click.option("--host-key", multiple=True, help="Accept this host key ('TYPE BASE64'), repeatable.")
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    default=None,
    help="known_hosts file to take the host key from [~/.ssh/known_hosts].",
)
@click.option("--yes", "-y", is_flag=True, help="Accept the host key shown without asking (scripts).")
@click.option("--no-connect", is_flag=True, help="Do not test the login now (needs --host-key for SSH).")
@click.option("--benchmark-model", default=None, help="adb: path of LiteRT's benchmark_model on the phone.")
@click.option("--replace", is_flag=True, help="Overwrite an existing entry of that name.")
@click.option(
    "--connect-timeout", type=click.FloatRange(1, 600), default=None,
    help="SSH: seconds to wait for the device to answer [10]; more for slow links.",
)  # fmt: skip
@click.option("--tag", "tags", multiple=True, help="A group this device belongs to (repeatable); `--device tag:NAME`.")
@config_option
@json_option
@click.pass_context
def add(
    ctx,
    name,
    ssh_addr,
    adb_serial,
    local,
    identity,
    python,
    workdir,
    host_key,
    known_hosts,
    yes,
    no_connect,
    benchmark_model,
    replace,
    connect_timeout,
    tags,
    config,
    as_json,
) -> None:
    """Add a device: exactly one of --ssh, --adb or --local.

    For SSH the host key is shown and must be accepted (or come from known_hosts / --host-key);
    then a test login runs. Passwords are never stored: use a key file or ssh-agent.
    """
    from pathlib import Path

    from edgekit.cli.output import print_json
    from edgekit.devices import inventory
    from edgekit.devices.targets.base import DeviceSpec
    from edgekit.errors import UsageError

    cfg = _cfg(ctx, config)
    inventory.check_name(name)
    if sum(bool(x) for x in (ssh_addr, adb_serial, local)) != 1:
        raise UsageError("give exactly one of --ssh USER@HOST[:PORT], --adb SERIAL or --local")
    if not replace and name in inventory.load(cfg):
        raise UsageError(f"device {name!r} already exists", hint="use --replace, or `edgekit devices remove`")
    options: dict = {}
    if tags:
        options["tags"] = sorted({inventory.check_tag(t) for t in tags})
    if ssh_addr:
        addr = parse_ssh_address(ssh_addr)
        if identity and not Path(identity).expanduser().is_file():
            raise UsageError(f"--identity {identity} does not exist")
        if no_connect and not host_key:
            raise UsageError("--no-connect needs --host-key (a host key is never accepted unseen)")
        keys, source = _accept_host_keys(
            name, addr.host, addr.port, host_key=host_key, known_hosts=known_hosts, yes=yes, as_json=as_json
        )
        options["host_keys"] = keys
        if connect_timeout:
            options["connect_timeout"] = connect_timeout
        spec = DeviceSpec(
            name,
            "ssh",
            str(addr),
            str(Path(identity).expanduser().resolve()) if identity else None,
            python or "python3",
            workdir or "~/edgekit",
            options,
        )
    elif adb_serial:
        if benchmark_model:
            options["benchmark_model"] = benchmark_model
        spec = DeviceSpec(
            name, "adb", adb_serial, None, python or "python3", workdir or "/data/local/tmp/edgekit", options
        )
        source = None
    else:
        import sys

        spec = DeviceSpec(name, "local", "", None, python or sys.executable, workdir or "~/edgekit", options)
        source = None
    login = None
    if spec.kind == "ssh" and not no_connect:
        from edgekit.devices.targets.ssh import SSHTarget

        target = SSHTarget(spec)
        try:
            res = target.run(["uname", "-sm"], timeout=30)
            login = res.stdout.strip()
        finally:
            target.close()
        if res.returncode != 0:  # e.g. ssh's own exit 255: "remote username contains invalid characters"
            from edgekit.errors import DeviceError

            last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
            raise DeviceError(
                f"test login to {spec.address} failed (exit {res.returncode}): {last}",
                hint=f"device {name!r} was not added; check the address and the key",
            )
    path = inventory.put(spec, cfg, replace_existing=replace)
    out = {
        "schema_version": 1,
        "added": _spec_dict(spec),
        "inventory": str(path),
        "host_key_source": source,
        "login": login,
    }
    if as_json:
        print_json(out)
        return
    click.echo(f"added {spec.kind} device {name!r} ({spec.address or 'this machine'}) to {path}")
    if source:
        click.echo(f"host key {source}: " + ", ".join(out["added"]["host_key_fingerprints"]))
    if login:
        click.echo(f"login ok: {login}")


@devices.command("list")
@config_option
@json_option
@click.pass_context
def list_(ctx, config, as_json) -> None:
    """List registered devices."""
    from edgekit.cli.output import console, print_json
    from edgekit.devices import inventory

    cfg = _cfg(ctx, config)
    devs = inventory.load(cfg)
    if as_json:
        print_json(
            {
                "schema_version": 1,
                "inventory": str(cfg or inventory.default_path()),
                "devices": [_spec_dict(s) for s in devs.values()],
            }
        )
        return
    if not devs:
        click.echo(f"no devices in {cfg or inventory.default_path()}; add one with `edgekit devices add`")
        return
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE, pad_edge=False)
    for col in ("name", "kind", "address", "tags", "python", "workdir"):
        t.add_column(col)
    for s in devs.values():
        t.add_row(s.name, s.kind, s.address or "-", ",".join(s.tags) or "-", s.python, s.workdir)
    console().print(t)


@devices.command("show")
@click.argument("name")
@config_option
@json_option
@click.pass_context
def show(ctx, name, config, as_json) -> None:
    """Show one device entry (with host key fingerprints)."""
    from edgekit.cli.output import print_json
    from edgekit.devices import inventory

    d = _spec_dict(inventory.get(name, _cfg(ctx, config)))
    if as_json:
        print_json({"schema_version": 1, **d})
        return
    d.pop("host_keys", None)
    for k, v in d.items():
        if v not in (None, "", [], {}):
            click.echo(f"{k}: {', '.join(v) if isinstance(v, list) else v}")


@devices.command("remove")
@click.argument("name")
@config_option
@json_option
@click.pass_context
def remove(ctx, name, config, as_json) -> None:
    """Remove a device entry (nothing on the device is touched)."""
    from edgekit.cli.output import print_json
    from edgekit.devices import inventory

    spec = inventory.remove(name, _cfg(ctx, config))
    if as_json:
        print_json({"schema_version": 1, "removed": spec.name})
    else:
        click.echo(f"removed {spec.name}")


@devices.command("trust")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Accept the key shown without asking.")
@click.option(
    "--host-key", multiple=True, help="Accept exactly this key ('TYPE BASE64') instead of scanning."
)
@config_option
@json_option
@click.pass_context
def trust(ctx, name, yes, host_key, config, as_json) -> None:
    """Deliberately accept a device's current SSH host key (after a reinstall or key change)."""
    from edgekit.cli.output import print_json
    from edgekit.devices import inventory
    from edgekit.devices.targets.ssh import fingerprint
    from edgekit.errors import UsageError

    cfg = _cfg(ctx, config)
    spec = inventory.get(name, cfg)
    if spec.kind != "ssh":
        raise UsageError(f"device {name!r} is a {spec.kind} device; host keys apply to SSH devices only")
    addr = parse_ssh_address(spec.address)
    old = [fingerprint(k) for k in spec.options.get("host_keys", [])]
    if old:
        click.echo(f"recorded now: {', '.join(old)}", err=True)
    keys, source = _accept_host_keys(
        name, addr.host, addr.port, host_key=host_key, known_hosts="/dev/null", yes=yes, as_json=as_json
    )
    inventory.update(name, cfg, options={"host_keys": keys})
    out = {
        "schema_version": 1,
        "device": name,
        "previous": old,
        "accepted": [fingerprint(k) for k in keys],
        "source": source,
    }
    if as_json:
        print_json(out)
    else:
        click.echo(f"{name}: host key {source}: {', '.join(out['accepted'])}")


def _targets_for(ctx, names: str | None, all_: bool, config: str | None):
    from edgekit.devices import inventory
    from edgekit.errors import UsageError

    if not names and not all_:
        raise UsageError("name a device (or a comma list), or pass --all")
    return inventory.resolve(names, all_, _cfg(ctx, config))


@devices.command("check")
@click.argument("names", required=False)
@click.option("--all", "all_", is_flag=True, help="Every device in the inventory.")
@click.option(
    "--runtime",
    metavar="PACKAGE[==VERSION]",
    default=None,
    help="Judge for ai-edge-litert or tflite-runtime (optionally pinned: ai-edge-litert==2.1.0).",
)
@config_option
@json_option
@click.pass_context
def check(ctx, names, all_, runtime, config, as_json) -> None:
    """Reachability, arch, OS, Python, interpreter packages, disk, memory, CPU, temperature, fixes."""
    from edgekit.cli.output import print_json
    from edgekit.devices import fleet
    from edgekit.devices.check import check as check_device
    from edgekit.devices.check import parse_runtime
    from edgekit.devices.targets.base import make_target

    if runtime is not None:
        parse_runtime(runtime)  # a bad value is a usage error before any connection
    specs = _targets_for(ctx, names, all_, config)

    def job(spec):
        target = make_target(spec)
        try:
            return check_device(target, runtime=runtime).to_dict()
        finally:
            target.close()

    outcomes = fleet.run_fleet(specs, job)
    if as_json:
        print_json({"schema_version": 1, "devices": [o.to_dict() for o in outcomes]})
    else:
        for o in outcomes:
            if o.ok or len(outcomes) > 1:  # one device's failure: its error line says it (once)
                _print_check(o)
    fleet.raise_for_outcomes(outcomes)


def _print_check(o) -> None:
    if not o.ok:
        click.echo(f"{o.device}: unreachable or failed: {o.error}")
        return
    r = o.result
    f = r["facts"]
    py = r.get("python") or {}
    rt = r.get("runtime")
    mem = f.get("mem_total_kb")
    lines = [
        f"{o.device}: reachable",
        f"  os         {f.get('os', '?')} ({f.get('kernel', '?')}, {f.get('glibc') or 'libc ?'})",
        f"  arch       {f.get('arch') or '?'} (from {f.get('arch_source', 'uname')}"
        + (f"; kernel uname -m: {f['uname_arch']})" if f.get("uname_arch") else ")"),
        f"  cpu        {f.get('cpu_model') or '?'} x{f.get('cpu_cores') or '?'}"
        + (f", {f['temperature_c']} °C" if f.get("temperature_c") is not None else ""),
        f"  memory     {mem // 1024 if mem else '?'} MB total, "
        f"{(f.get('mem_available_kb') or 0) // 1024} MB available",
        f"  disk free  {(f.get('disk_free_kb') or 0) // 1024} MB",
        f"  python     {py.get('python', 'not usable')} ({py.get('executable', '-')})",
        f"  runtime    {rt['package'] + ' ' + str(rt['version']) if rt else 'none importable'}",
        f"  recommend  {(r.get('recommended') or {}).get('package') or 'none'}: "
        f"{(r.get('recommended') or {}).get('reason', '')}",
    ]
    for m, info in sorted((py.get("modules") or {}).items()):
        lines.append(f"    {m:15s} {info.get('version') if info.get('ok') else 'missing'}")
    for fix in r.get("fixes", []):
        lines.append(f"  fix: {fix}")
    if not r.get("fixes"):
        lines.append("  ready")
    click.echo("\n".join(lines))


@devices.command("setup")
@click.argument("name")
@click.option(
    "--runtime",
    metavar="PACKAGE[==VERSION]",
    default=None,
    help="Install ai-edge-litert or tflite-runtime instead of the automatic choice, optionally pinned "
    "exactly (ai-edge-litert==2.1.0, tflite-runtime==2.14.0).",
)
@click.option(
    "--python",
    "base_python",
    default="python3",
    show_default=True,
    help="Python on the device to create the virtual environment with.",
)
@click.option(
    "--find-links",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of wheels on this machine: copied over and installed with --no-index (offline).",
)
@click.option("--camera", is_flag=True, help="Also install opencv-python-headless (for `edgekit camera`).")
@click.option(
    "--system-site-packages",
    is_flag=True,
    help="Let the venv see the system's packages (e.g. apt's python3-opencv, picamera2).",
)
@config_option
@json_option
@click.pass_context
def setup(ctx, name, runtime, base_python, find_links, camera, system_site_packages, config, as_json) -> None:
    """Create WORKDIR/venv on the device and install numpy, Pillow and a TFLite interpreter (idempotent).

    The interpreter package is chosen from the device's architecture, Python and glibc (and why is
    printed). Needs the device to reach PyPI, unless --find-links gives the wheels.
    """
    from edgekit.cli.output import print_json, progress_steps
    from edgekit.devices import inventory
    from edgekit.devices.check import parse_runtime
    from edgekit.devices.check import setup as setup_device
    from edgekit.devices.targets.base import make_target
    from edgekit.errors import UsageError

    if runtime is not None:
        parse_runtime(runtime)  # a bad value is a usage error before any connection
    cfg = _cfg(ctx, config)
    spec = inventory.get(name, cfg)
    if spec.kind != "ssh":
        raise UsageError(
            f"`devices setup` sets up SSH devices; {name!r} is a {spec.kind} device",
            hint="see the README for what an Android phone needs",
        )
    target = make_target(spec)
    try:
        with progress_steps(f"setup {name}", quiet=as_json) as step:
            out = setup_device(
                target,
                runtime=runtime,
                base_python=base_python,
                find_links=find_links,
                camera=camera,
                system_site_packages=system_site_packages,
                progress=step,
            )
    finally:
        target.close()
    if spec.python != out["python"]:
        inventory.update(name, cfg, python=out["python"])
    out["inventory_python"] = out["python"]
    if as_json:
        print_json(out)
        return
    verb = "installed" if out["changed"] else "already set up:"
    click.echo(
        f"{name}: {verb} {out['runtime']} {out['runtime_version']} in {out['python']} "
        f"(Python {out['python_version']})"
    )
    click.echo(f"why {out['runtime']}: {out['reason']}")
