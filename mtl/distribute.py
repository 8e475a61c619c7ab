"""Where training runs: one device, every local device (`mirrored`), or several machines (`multiworker`).

`train.strategy` picks a `tf.distribute` strategy; networks and their trainers are built and
compiled inside its scope, and Keras's `fit` splits each batch of `data.batch_size` (the global
batch) over the replicas and, across machines, shards the data. A multi-machine run is the same
`mtl` command on every machine, each told its place in the cluster by `TF_CONFIG`; only the chief
writes the run, the other workers write theirs to a folder of their own that is removed at the end.
"""

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import tensorflow as tf
from keras import ops

from mtl.config import TrainConfig
from mtl.errors import UserError

WORKER_DIR = "workertemp_{}"  # inside --runs-dir: a non-chief worker's own copy of the run (TensorFlow's naming)

# One strategy of each kind per process: TensorFlow sets collective communication up once, and
# a comparison trains many runs with it.
_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def strategy_for(config: TrainConfig) -> tf.distribute.Strategy:
    """The strategy `config.strategy` names; "none" is TensorFlow's default, one device."""
    if config.strategy == "none":
        return tf.distribute.get_strategy()
    if config.strategy not in _STRATEGIES:
        strategy = mirrored() if config.strategy == "mirrored" else multiworker(config.worker_wait_seconds)
        print(f"Training with {strategy.num_replicas_in_sync} replicas in sync ({config.strategy}).", flush=True)
        _STRATEGIES[config.strategy] = strategy
    return _STRATEGIES[config.strategy]


def mirrored() -> tf.distribute.MirroredStrategy:
    """Every local GPU, else every logical CPU device (MirroredStrategy alone would take only the first CPU)."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def multiworker(wait_seconds: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """The strategy across the machines `TF_CONFIG` lists, once every one of them has started.

    TensorFlow's own wait for the other workers happens in native code that holds the
    interpreter and no signal interrupts, so a worker that never starts would hang the others
    for ever. Each worker therefore first waits for the others itself (`wait_for_peers`), saying
    so, and gives up after `wait_seconds` with one sentence.
    """
    text = os.environ.get("TF_CONFIG")
    check_tf_config(text)
    tf_config = json.loads(text)
    addresses = [address for addresses in tf_config["cluster"].values() for address in addresses]
    own = tf_config["cluster"][tf_config["task"]["type"]][tf_config["task"]["index"]]
    print(f"Waiting for the {len(addresses)} workers TF_CONFIG lists to start (giving up after {wait_seconds:g} s).", flush=True)
    wait_for_peers(own, [address for address in addresses if address != own], wait_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy()


def wait_for_peers(own: str, peers: list[str], wait_seconds: float) -> None:
    """Listen on this worker's own address while each peer's address is tried until it answers.

    A peer answers once it is waiting here too (its listener) or has gone on into TensorFlow (its
    server), so no two workers wait on each other; the listener is closed for TensorFlow to take
    the port. A peer that does not answer within `wait_seconds` is a UserError naming it.
    """
    host, port = split_address(own)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("" if host in ("localhost", "127.0.0.1") else host, port))
    except OSError as error:
        listener.close()
        raise UserError(f"This worker cannot listen on its TF_CONFIG address {own} ({error.strerror}).") from None
    listener.listen()
    deadline = time.monotonic() + wait_seconds
    try:
        waiting = list(peers)
        while waiting:
            try:
                socket.create_connection(split_address(waiting[0]), timeout=1).close()
                waiting.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise UserError(
                        f"Worker {waiting[0]} of TF_CONFIG did not start within {wait_seconds:g} s; start the same "
                        "command on every machine TF_CONFIG lists, or raise train.worker_wait_seconds."
                    ) from None
                time.sleep(0.5)
    finally:
        listener.close()


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def check_tf_config(text: str | None) -> None:
    """Refuse, with a UserError, a TF_CONFIG that is missing or does not place this process in its cluster."""
    expected = 'JSON such as {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    if not text:
        raise UserError(f"train.strategy 'multiworker' needs the TF_CONFIG environment variable, {expected}.")
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        addresses = cluster[task["type"]]
        placed = isinstance(addresses, list) and isinstance(task["index"], int) and 0 <= task["index"] < len(addresses)
        every = [address for listed in cluster.values() for address in listed]
        placed = placed and all(isinstance(address, str) and address.rpartition(":")[2].isdigit() for address in every)
    except (json.JSONDecodeError, KeyError, TypeError):
        placed = False
    if not placed:
        raise UserError(f"TF_CONFIG '{text}' does not place this process in its cluster; expected {expected}.")


def writes_runs(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run: always, except on a multiworker worker that is not the chief."""
    return strategy.extended.should_checkpoint


@contextmanager
def runs_dir_of_this_process(runs_dir: Path, config: TrainConfig):
    """Yields where this process writes its runs: `runs_dir`, or for a worker that is not the chief its own
    folder inside it, removed once the command succeeds (kept otherwise, so that it resumes as the chief does).

    The strategy is made here, as the command starts: a multiworker one must exist before TensorFlow runs anything.
    """
    strategy = strategy_for(config)
    if writes_runs(strategy):
        yield Path(runs_dir)
        return
    own = Path(runs_dir) / WORKER_DIR.format(strategy.cluster_resolver.task_id)
    yield own
    shutil.rmtree(own, ignore_errors=True)


def sharded_by_example(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, split between workers by examples: it reads from memory, so there are no files to split."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def global_sum(value):
    """`value` summed over every replica (inside a replicated step); itself with one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or replicas() == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean_estimate(local_mean, local_count, global_count):
    """A replica's mean over its `local_count` labelled examples, turned into its part of the mean over the
    whole global batch, times the replicas: the replicas' values average to that mean exactly, however
    the labels fall between them (one replica's own mean would weigh its examples more where it holds fewer).
    """
    if replicas() == 1:
        return local_mean
    return local_mean * local_count * replicas() / ops.maximum(global_count, 1e-8)


def global_results(metrics: list) -> dict:
    """Each mean metric's result over every replica's examples (its total over its count), not this replica's alone.

    Keras averages the replicas' logs, which for ratios is not the ratio over the global batch.
    """
    if tf.distribute.get_replica_context() is None or replicas() == 1:
        return {metric.name: metric.result() for metric in metrics}
    sums = global_sum(ops.convert_to_tensor([[metric.total.value, metric.count.value] for metric in metrics]))
    results = {metric.name: ops.divide_no_nan(sums[index, 0], sums[index, 1]) for index, metric in enumerate(metrics)}
    if across_machines():
        # Every replica now holds the same results; Keras still averages them over the machines,
        # along a first axis, which a scalar lacks.
        return {name: ops.reshape(value, (1,)) for name, value in results.items()}
    return results


def across_machines() -> bool:
    """Whether training runs on several machines (a multiworker strategy whose cluster has more than one task)."""
    resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
    return resolver is not None and sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def replica_share(value):
    """A per-replica loss scaled so that the replicas' gradients, which Keras sums, add up to their mean.

    Keras's own losses are scaled the same way (`keras.src.losses.loss.scale_loss_for_distribution`).
    """
    return value / replicas() if replicas() > 1 else value
