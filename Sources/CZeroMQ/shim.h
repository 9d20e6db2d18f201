#include <zmq.h>
// The ZeroMQ I/O thread is woken through an eventfd polled beside its sockets.
#include <sys/eventfd.h>
