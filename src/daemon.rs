//! The daemon: starts the tasks and wires the channels; reload; sd_notify; shutdown.
