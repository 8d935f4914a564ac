# pbdZMQ builds its constant tables on every call (ZMQ.SO() costs about 170 us, ZMQ.MC()
# 50 us), so the ones the replica uses per message are read once, when the package loads.
zmq_constants <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  zmq_constants$RCVMORE <- pbdZMQ::ZMQ.SO()$RCVMORE
  zmq_constants$SNDMORE <- pbdZMQ::ZMQ.SR()$SNDMORE
  zmq_constants$BLOCK <- pbdZMQ::ZMQ.SR()$BLOCK
  zmq_constants$POLLIN <- pbdZMQ::ZMQ.PO()$POLLIN
  zmq_constants$MC <- pbdZMQ::ZMQ.MC()
}
