import sys, signal, traceback
from nvmeofctl.cli import main
print("handler", signal.getsignal(signal.SIGINT), file=sys.stderr)
import nvmeofctl.remote.ssh as ssh
orig = ssh.run_many
def wrapped(*a, **k):
    try:
        return orig(*a, **k)
    except BaseException as e:
        traceback.print_exc()
        raise
ssh.run_many = wrapped
main.run(sys.argv[1:])
