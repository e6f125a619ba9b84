"""`lab ACTION`: teaching labs. `lab vm [SCENARIO]` starts QEMU paused on a forged scenario's
memory (`live.labvm`); `lab vm --stop` stops it by its PID.

This module only dispatches: each action is a module with `add_arguments(parser)` and
`run(session, args) -> Result`, listed in `ACTIONS` (other lab actions add a line there).
"""
import argparse
import importlib
from typing import Any, Dict, Iterable, List

from pykd_ext.render.grid import Column, Result

HELP = "teaching labs: `lab vm [SCENARIO]` starts QEMU paused on a forged scenario (`--stop` ends it)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'lab vm standard --dir /tmp/lab',
    'lab vm --stop --dir /tmp/lab',
]

#: action -> (module, one-line help); the module defines add_arguments and run
ACTIONS: Dict[str, tuple] = {
    "vm": ("pykd_ext.commands.lab", "start (or --stop) a QEMU guest paused on a forged scenario"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the common options again after the action, as `structs ACTION` takes them
    from pykd_ext.commands.structs import _late_common
    sub = parser.add_subparsers(dest="lab_action", metavar="ACTION")
    sub.required = True
    for name, (module_name, help_text) in ACTIONS.items():
        action_parser = sub.add_parser(name, help=help_text, parents=[_late_common()])
        module = importlib.import_module(module_name)
        getattr(module, "add_%s_arguments" % name, getattr(module, "add_arguments"))(action_parser)


def run(session: Any, args: argparse.Namespace) -> Result:
    module_name = ACTIONS[args.lab_action][0]
    module = importlib.import_module(module_name)
    return getattr(module, "run_%s" % args.lab_action, getattr(module, "run"))(session, args)


# --- lab vm ----------------------------------------------------------------------------------

def add_vm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", default="standard",
                        help="forge scenario: standard[:N], bulk:P[:T[:H]] or a .yaml/.json file "
                             "(default: standard)")
    parser.add_argument("--build", default="win10", help="forge build name or version (default: win10)")
    parser.add_argument("--memory", metavar="SIZE", help="guest RAM, e.g. 512M or 5G "
                        "(default: the scenario's span, at least 256M)")
    parser.add_argument("--dir", metavar="DIR", help="folder for the RAM file, QMP socket and "
                        "lab.json (default: /dev/shm/pykd-ext-lab-UID)")
    parser.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    parser.add_argument("--stop", action="store_true", help="stop the lab VM of --dir by its PID")


def run_vm(session: Any, args: argparse.Namespace) -> Result:
    from pykd_ext.live import labvm
    columns = [Column("action"), Column("pid", fmt="int"), Column("target"), Column("scenario"),
               Column("memory", fmt="int"), Column("folder")]
    if args.stop:
        pid = labvm.stop_lab_vm(args.dir)
        record = {"action": "stopped" if pid else "none running", "pid": pid, "target": None,
                  "scenario": None, "memory": None,
                  "folder": args.dir or labvm.default_folder()}

        def stopped(result: Result) -> Iterable[str]:
            yield ("Stopped lab VM (PID %d)" % pid) if pid else "No lab VM was running"
        return Result("lab", columns, records=[record], text=stopped)
    memory = None
    if args.memory:
        from pykd_ext.live.locator import parse_size
        memory = parse_size(args.memory, "--memory")
    vm = labvm.start_lab_vm(args.scenario, args.build, memory, args.dir, args.qemu)
    record = dict(vm.record(), action="started")

    def text(result: Result) -> Iterable[str]:
        lines: List[str] = [
            "Lab VM started, paused: scenario %s (Windows %s, %d processes), %d MiB of guest RAM"
            % (vm.scenario, vm.build, vm.processes, vm.memory >> 20),
            "  PID:     %d" % vm.pid,
            "  target:  %s" % vm.target,
            "  try:     pykd-ext ps --target %s" % vm.target,
            "  stop:    pykd-ext lab vm --stop%s   (or: kill %d)"
            % (" --dir %s" % vm.folder if args.dir else "", vm.pid),
        ]
        return lines
    return Result("lab", columns, records=[record], text=text)
