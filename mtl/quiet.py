"""TensorFlow started without its start-up noise on stderr, every other line of it kept.

TensorFlow's native libraries log through Abseil as they load, before anything has called
`absl::InitializeLog()`, so Abseil writes everything to stderr whatever `TF_CPP_MIN_LOG_LEVEL`
says, prefixed by "WARNING: All log messages before absl::InitializeLog() is called are written
to STDERR". No environment variable reaches that logger and Python cannot initialise it, so while
TensorFlow is imported and its devices are listed, file descriptor 2 is passed through a filter
that drops exactly the lines below and nothing else: a real error, warning or traceback is shown.
"""

import os
import re
import sys
import threading

ABSL_PREAMBLE = re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called")
NO_CUDA_DRIVER = re.compile(r"^I\d{4} .*Could not find cuda drivers on your machine, GPU will not be used\.$")
# On a machine without a driver cuInit has to fail; with a driver, its failure is a real error and is shown.
CUINIT_WITHOUT_DRIVER = re.compile(r"^E\d{4} .*failed call to cuInit: ")
# On a CPU with AVX-512 VNNI or BF16, TensorFlow turns oneDNN's custom operations on and says so as it loads.
ONEDNN_NOTICE = re.compile(r"^I\d{4} .*oneDNN custom operations are on\. ")
CPU_INSTRUCTIONS = re.compile(r"^(I\d{4} .*cpu_feature_guard\.cc.*|To enable the following instructions: .*)$")
# LiteRT's (mtl.lite) one line when its interpreter first runs on the CPU.
XNNPACK_DELEGATE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")

_started = False


def start_tensorflow() -> None:
    """Import TensorFlow and list its devices (once), with the start-up noise left out of stderr."""
    global _started
    if _started:
        return
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # where CUDA is initialised, and says it has no driver
    _started = True


def is_noise(line: str, no_driver_seen: bool) -> bool:
    """Whether one line of stderr is start-up noise (the cuInit failure only once no driver was reported)."""
    return bool(ABSL_PREAMBLE.match(line) or NO_CUDA_DRIVER.match(line) or CPU_INSTRUCTIONS.match(line)
                or ONEDNN_NOTICE.match(line) or XNNPACK_DELEGATE.match(line)
                or (no_driver_seen and CUINIT_WITHOUT_DRIVER.match(line)))


class filtered_stderr:
    """File descriptor 2 goes through a pipe whose reader passes on every line that is not noise."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.reader = threading.Thread(target=self._pass_on, args=(read_end,), daemon=True)
        self.reader.start()
        return self

    def _pass_on(self, read_end: int) -> None:
        no_driver_seen = False
        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:
                line = raw.decode(errors="replace").rstrip("\n")
                no_driver_seen = no_driver_seen or bool(NO_CUDA_DRIVER.match(line))
                if not is_noise(line, no_driver_seen):
                    os.write(self.saved, raw)

    def __exit__(self, *exc_info):
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # closes the pipe's last write end: the reader sees its end and stops
        self.reader.join(timeout=5)
        os.close(self.saved)
        return False
