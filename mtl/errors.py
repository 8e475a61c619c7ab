"""The one exception type for mistakes a user can make; the CLI turns it into a sentence and exit 2."""


class UserError(Exception):
    """Bad input from the user (path, file, option): the message is one sentence, shown as is."""


class DiskFull(UserError):
    """The disk filled while the command wrote: a UserError after which the process ends at once.

    A weights file that h5py was writing when the disk filled cannot be closed, and its objects'
    destructors crash the interpreter as it shuts down (a segmentation fault, not exit 2), so the
    CLI leaves without that teardown (`os._exit`). Nothing is lost by it: every checkpoint is
    written aside and renamed only when whole, and the same command resumes after the last one.
    """
