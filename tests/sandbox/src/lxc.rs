//! LXC glue (in progress).
