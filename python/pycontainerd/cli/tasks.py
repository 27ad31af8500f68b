"""``pyctr tasks start|ls|ps|exec|kill|pause|resume|metrics|attach|rm``: ctr's task commands,
flags and output; and what ``pyctr run`` shares with them (stdio, a terminal in raw mode with
its size forwarded, signals forwarded, the exit code of the process as pyctr's)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import termios
import tty as ttymod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pycontainerd import cio, errdefs
from pycontainerd.api.io.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from pycontainerd.api.io.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from pycontainerd.cli.common import client_from
from pycontainerd.client.containers import STOP_SIGNAL_LABEL
from pycontainerd.client.tasks import Metrics, Process, parse_signal

__all__ = [
    "FORWARDED_SIGNALS",
    "add_io_flags",
    "add_parser",
    "go_tabwriter",
    "io_creator",
    "run_process",
]

#: The signals a non-terminal ``run``/``start``/``exec``/``attach`` passes on to the process
#: (ctr forwards every signal it can catch).
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGCONT,
)


#: How long ``attach`` lets the output drain after the exit before taking what is buffered.
ATTACH_DRAIN_SECONDS = 1.0


# --- output as Go's tabwriter --------------------------------------------------------------


def go_tabwriter(lines: Sequence[str], *, minwidth: int, padding: int, out: TextIO) -> None:
    """Write tab-separated ``lines`` as Go's ``tabwriter`` with space padding and no flags
    does: a column block is a run of lines with a tab-terminated cell in that column, as wide
    as its widest such cell plus ``padding`` (at least ``minwidth``); a line's last cell (not
    tab-terminated) is written as it is."""
    rows = [line.split("\t") for line in lines]
    text: list[str] = []
    widths: list[int] = []

    def write_lines(start: int, end: int) -> None:
        for row in rows[start:end]:
            cells = []
            for j, cell in enumerate(row):
                if j < len(row) - 1 and j < len(widths):
                    cells.append(cell.ljust(widths[j]))
                else:
                    cells.append(cell)
            text.append("".join(cells))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(rows))
    for line in text:
        out.write(line + "\n")


def go_time(ns: int) -> str:
    """Go's ``time.Time.String()`` of a UTC time in nanoseconds since the epoch:
    ``2006-01-02 15:04:05.999999999 +0000 UTC``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    dt = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + " +0000 UTC"


# --- stdio, terminals, signals -------------------------------------------------------------


def add_io_flags(p: argparse.ArgumentParser, *, null_io: bool = True) -> None:
    """ctr's ``--null-io``, ``--log-uri`` and ``--fifo-dir``."""
    if null_io:
        p.add_argument("--null-io", action="store_true", help="send all IO to /dev/null")
    p.add_argument("--log-uri", default="", help="log uri (file:///path or binary:///path)")
    p.add_argument("--fifo-dir", default="", help="directory used for storing IO FIFOs")


def _stdin() -> int | None:
    try:
        os.fstat(0)
    except OSError:
        return None
    return 0


def io_creator(args: argparse.Namespace, *, terminal: bool) -> cio.Creator:
    """The IO of ctr's ``tasks.NewTask``: a terminal (stdin and stdout), null IO, a log URI,
    or this process's stdin, stdout and stderr, through FIFOs in ``--fifo-dir``."""
    null = getattr(args, "null_io", False)
    fifo_dir = args.fifo_dir or None
    if terminal:
        if null:
            raise errdefs.InvalidArgument("tty and null-io cannot be used together")
        return cio.with_streams(_stdin(), 1, None, terminal=True, fifo_dir=fifo_dir)
    if null:
        return cio.null_io
    if args.log_uri:
        return cio.log_uri(args.log_uri)
    return cio.with_streams(_stdin(), 1, 2, fifo_dir=fifo_dir)


@contextlib.contextmanager
def _console(process: Process) -> Iterator[None]:
    """Raw mode on this terminal and its size forwarded (ctr's ``HandleConsoleResize``)."""
    fd = 0
    if not os.isatty(fd):
        yield
        return

    def resize(*_: object) -> None:
        size = os.get_terminal_size(fd)
        with contextlib.suppress(errdefs.ContainerdError):
            process.resize(size.columns, size.lines)

    saved = termios.tcgetattr(fd)
    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        ttymod.setraw(fd)
        resize()
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _forward_signals(process: Process) -> Iterator[None]:
    """Every signal pyctr receives goes to the process (ctr's ``ForwardAllSignals``)."""

    def forward(signum: int, _: object) -> None:
        with contextlib.suppress(errdefs.ContainerdError):
            process.kill(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_process(
    process: Process,
    *,
    detach: bool,
    terminal: bool,
    after: Callable[[], None] | None = None,
) -> int:
    """Start ``process`` and, unless ``detach``, wait for it with the terminal or signal
    handling, delete it and call ``after``; the exit code (0 when detached)."""
    exited = process.wait_future()
    if detach:
        try:
            process.start()
        except BaseException:
            process.io.close()
            raise
        return 0
    # the terminal and the signals are handled from before the start: nothing is missed
    try:
        with _console(process) if terminal else _forward_signals(process):
            process.start()
            status = exited.result()
    except BaseException:
        with contextlib.suppress(errdefs.ContainerdError):
            process.delete(force=True)
        if after is not None:
            after()
        raise
    process.delete()
    if after is not None:
        after()
    return status.code


# --- commands ------------------------------------------------------------------------------


def _container_id(args: argparse.Namespace) -> str:
    if not args.id:
        raise errdefs.InvalidArgument("container id must be provided")
    return str(args.id)


def _start(args: argparse.Namespace) -> int:
    container_id = _container_id(args)
    with client_from(args) as client:
        handle = client.container(container_id)
        terminal = bool(handle.spec().get("process", {}).get("terminal"))
        task = handle.new_task(io=io_creator(args, terminal=terminal))
        if args.pid_file:
            with open(args.pid_file, "w") as f:
                f.write(str(task.pid))
        return run_process(task, detach=args.detach, terminal=terminal)


def _list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        tasks = client.tasks.list()
    if args.quiet:
        for task_id, _, _ in tasks:
            print(task_id)
        return 0
    lines = ["TASK\tPID\tSTATUS\t"]
    lines += [f"{task_id}\t{pid}\t{status.upper()}" for task_id, pid, status in tasks]
    go_tabwriter(lines, minwidth=4, padding=4, out=sys.stdout)
    return 0


def _ps(args: argparse.Namespace) -> int:
    container_id = _container_id(args)
    with client_from(args) as client:
        processes = client.tasks.get(container_id).pids()
    lines = ["PID\tINFO"]
    for p in processes:
        info = "-"
        if p.info is not None:
            info = (
                f"&ProcessDetails{{ExecID:{p.exec_id},XXX_unrecognized:[],}}"
                if p.info.type_url.endswith("ProcessDetails")
                else p.info.type_url
            )
        lines.append(f"{p.pid}\t{info}")
    go_tabwriter(lines, minwidth=1, padding=4, out=sys.stdout)
    return 0


def _exec(args: argparse.Namespace) -> int:
    container_id = _container_id(args)
    if not args.exec_id:
        raise errdefs.InvalidArgument("exec-id must be provided")
    if not args.command:
        raise errdefs.InvalidArgument("a command to run must be provided")
    with client_from(args) as client:
        task = client.tasks.get(container_id)
        creator = io_creator(args, terminal=args.tty)
        process = task.exec(
            args.exec_id,
            args.command,
            io=creator,
            terminal=args.tty,
            cwd=args.cwd or None,
            user=args.user or None,
        )
        return run_process(process, detach=args.detach, terminal=args.tty)


def _kill(args: argparse.Namespace) -> int:
    container_id = _container_id(args)
    if args.all and args.exec_id:
        raise errdefs.InvalidArgument("specify an exec-id or all; not both")
    with client_from(args) as client:
        sig: int | str = args.signal
        if not sig:
            label = client.containers.get(container_id).labels.get(STOP_SIGNAL_LABEL, "")
            sig = label or "SIGTERM"
        task = client.tasks.get(container_id)
        process = task.load_process(args.exec_id) if args.exec_id else task
        process.kill(parse_signal(sig), all=args.all)
    return 0


def _simple(action: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        container_id = _container_id(args)
        with client_from(args) as client:
            task = client.tasks.get(container_id)
            getattr(task, action)()
        return 0

    return command


def _metrics_table(m: Metrics) -> list[str]:
    lines = ["ID\tTIMESTAMP\t", f"{m.id}\t{go_time(m.timestamp_ns)}\t", "", "METRIC\tVALUE\t"]
    data = m.data
    if isinstance(data, cgroups_v1.Metrics):
        if data.HasField("memory"):
            lines += [
                f"memory.usage_in_bytes\t{data.memory.usage.usage}\t",
                f"memory.limit_in_bytes\t{data.memory.usage.limit}\t",
                f"memory.stat.cache\t{data.memory.total_cache}\t",
            ]
        if data.HasField("cpu"):
            percpu = " ".join(str(x) for x in data.cpu.usage.per_cpu)
            lines += [
                f"cpuacct.usage\t{data.cpu.usage.total}\t",
                f"cpuacct.usage_percpu\t[{percpu}]\t",
            ]
        if data.HasField("pids"):
            lines += [f"pids.current\t{data.pids.current}\t", f"pids.limit\t{data.pids.limit}\t"]
    elif isinstance(data, cgroups_v2.Metrics):
        if data.HasField("pids"):
            lines += [f"pids.current\t{data.pids.current}\t", f"pids.limit\t{data.pids.limit}\t"]
        if data.HasField("cpu"):
            c = data.cpu
            lines += [
                f"cpu.usage_usec\t{c.usage_usec}\t",
                f"cpu.user_usec\t{c.user_usec}\t",
                f"cpu.system_usec\t{c.system_usec}\t",
                f"cpu.nr_periods\t{c.nr_periods}\t",
                f"cpu.nr_throttled\t{c.nr_throttled}\t",
                f"cpu.throttled_usec\t{c.throttled_usec}\t",
            ]
        if data.HasField("memory"):
            mem = data.memory
            lines += [
                f"memory.usage\t{mem.usage}\t",
                f"memory.usage_limit\t{mem.usage_limit}\t",
                f"memory.swap_usage\t{mem.swap_usage}\t",
                f"memory.swap_limit\t{mem.swap_limit}\t",
            ]
    return lines


def _go_json(msg: Message) -> dict[str, Any]:
    """A message as Go's ``encoding/json`` writes the gogo-generated struct (ctr's
    ``--format json``): the fields that are set, in field order, numbers as numbers."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                out[field.name] = [_go_json(v) for v in value]
            else:
                out[field.name] = _go_json(value)
        elif field.is_repeated:
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def _metrics(args: argparse.Namespace) -> int:
    container_id = _container_id(args)
    if args.format not in ("table", "json"):
        raise errdefs.InvalidArgument("format must be table or json")
    with client_from(args) as client:
        m = client.tasks.get(container_id).metrics()
    if args.format == "json":
        print(json.dumps(_go_json(m.data), indent=2))
        return 0
    go_tabwriter(_metrics_table(m), minwidth=1, padding=4, out=sys.stdout)
    return 0


def _attach(args: argparse.Namespace) -> int:
    container_id = _container_id(args)
    with client_from(args) as client:
        task = client.tasks.get(container_id, attach=cio.attach(_stdin(), 1, 2))
        terminal = task.io.config.terminal
        task.io.start()
        exited = task.wait_future()
        with _console(task) if terminal else _forward_signals(task):
            status = exited.result()
        # attached after the exit, no writer ever comes: take what is buffered and stop
        if not task.io.wait(ATTACH_DRAIN_SECONDS):
            task.io.cancel()
        task.io.close()
        return status.code


def _delete(args: argparse.Namespace) -> int:
    if not args.ids:
        raise errdefs.InvalidArgument("container id must be provided")
    first: errdefs.ContainerdError | None = None
    with client_from(args) as client:
        for container_id in args.ids:
            try:
                task = client.tasks.get(container_id)
                if args.exec_id:
                    task.load_process(args.exec_id).delete(force=args.force)
                else:
                    task.delete(force=args.force)
            except errdefs.ContainerdError as exc:
                if len(args.ids) == 1:
                    raise
                first = first or exc
                print(f"pyctr: failed to delete task {container_id!r}: {exc}", file=sys.stderr)
    if first is not None:
        raise first
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tasks", aliases=["t", "task"], help="manage tasks")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    start = cmds.add_parser("start", help="start a container that has been created")
    add_io_flags(start)
    start.add_argument("--pid-file", default="", help="file path to write the task's pid")
    start.add_argument(
        "-d", "--detach", action="store_true", help="detach from the task after it has started"
    )
    start.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    start.set_defaults(func=_start)

    ls = cmds.add_parser("list", aliases=["ls"], help="list tasks")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the task id")
    ls.set_defaults(func=_list)

    ps = cmds.add_parser("ps", help="list processes for container")
    ps.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    ps.set_defaults(func=_ps)

    ex = cmds.add_parser("exec", help="execute additional processes in an existing container")
    ex.add_argument("--cwd", default="", help="working directory of the new process")
    ex.add_argument("-t", "--tty", action="store_true", help="allocate a TTY for the process")
    ex.add_argument(
        "-d", "--detach", action="store_true", help="detach from the task after it has started"
    )
    ex.add_argument("--exec-id", default="", help="exec specific id for the process")
    add_io_flags(ex, null_io=False)
    ex.add_argument("--user", default="", help="user id or name")
    ex.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    ex.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    ex.set_defaults(func=_exec)

    kill = cmds.add_parser("kill", help="signal a container (default: SIGTERM)")
    kill.add_argument("-s", "--signal", default="", help="signal to send to the container")
    kill.add_argument("--exec-id", default="", help="process ID to kill")
    kill.add_argument(
        "-a", "--all", action="store_true", help="send signal to all processes inside"
    )
    kill.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    kill.set_defaults(func=_kill)

    for name, help_ in (
        ("pause", "pause an existing container"),
        ("resume", "resume a paused container"),
    ):
        cmd = cmds.add_parser(name, help=help_)
        cmd.add_argument("id", nargs="?", default="", metavar="CONTAINER")
        cmd.set_defaults(func=_simple(name))

    metrics = cmds.add_parser(
        "metrics", aliases=["metric"], help="get a single data point of metrics"
    )
    metrics.add_argument("--format", default="table", help='"table" or "json" (default "table")')
    metrics.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    metrics.set_defaults(func=_metrics)

    attach = cmds.add_parser("attach", help="attach to the IO of a running container")
    attach.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    attach.set_defaults(func=_attach)

    rm = cmds.add_parser("delete", aliases=["del", "remove", "rm"], help="delete one or more tasks")
    rm.add_argument("-f", "--force", action="store_true", help="force delete task process")
    rm.add_argument("--exec-id", default="", help="process ID to kill")
    rm.add_argument("ids", nargs="*", metavar="CONTAINER")
    rm.set_defaults(func=_delete)
