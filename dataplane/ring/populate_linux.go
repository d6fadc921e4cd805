package ring

import "syscall"

// mapPopulate asks mmap to map every page of a file ring at once.
const mapPopulate = syscall.MAP_POPULATE
