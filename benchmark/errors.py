"""The one exception type the CLI turns into a one-line message and exit status 2, and the one line that
stands for any other failure of a plug-in."""


class UserError(Exception):
    """Bad input or an unusable environment: the message says what was wrong and what to do."""


def failure_line(label: str, error: BaseException) -> str:
    """`Type: message` of an unexpected failure (a plug-in's bug, say); the traceback is logged when
    CORESET_BENCH_DEBUG is set, for whoever debugs the plug-in."""
    import logging
    import os
    import traceback

    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    if os.environ.get("CORESET_BENCH_DEBUG"):
        logging.getLogger("benchmark").error("%s failed:\n%s", label,
                                             "".join(traceback.format_exception(error)).rstrip())
        return line
    return f"{line} (CORESET_BENCH_DEBUG=1 shows the traceback)"
