"""A minimal AMQP 1.0 broker for Ferrule's AMQP 1.0 tests, built on Apache Qpid Proton (the
`python-qpid-proton` package), so independent of the fe2o3-amqp client under test.

Listens on 127.0.0.1 on a port of the system's choosing. SASL ANONYMOUS only: the PyPI build of
Proton has no Cyrus SASL, and its built-in SASL offers a server ANONYMOUS and EXTERNAL. Messages are
queued by address and delivered, unsettled, to the receivers attached to that address (round robin,
as their credit allows). Clients' sender links are attached but get no credit. Its connection
properties name it `product: ferrule-test-peer`.

Commands, one JSON object a line on stdin:
  {"put": ADDRESS, "body": TEXT}                 queue a message with an amqp-value string body
  {"detach": ADDRESS, "error": TEXT, "closed": B} detach every link sending from ADDRESS with the
                                                 error amqp:internal-error / TEXT: a closing
                                                 detach when B is true (the default), else a
                                                 non-closing one (which Proton sends without the
                                                 error)
  {"silent": B}                                  from now on, answer no detach and no end of a
                                                 session (as a broker whose session process
                                                 crashed), or answer them again

Reports, one JSON object a line on stdout:
  {"listening": PORT}                            first, once it accepts connections
  {"attached": ADDRESS}                          a client attached a receiver to ADDRESS
  {"put": ADDRESS}                               the message is queued
  {"sent": ADDRESS, "body": TEXT, "delivery_count": N}
  {"outcome": "accepted"|"rejected"|"released"|"modified", "address": ADDRESS, "body": TEXT,
   "delivery_failed": B, "undeliverable_here": B}    (the last two for modified only)
  {"detached": ADDRESS, "links": N}
  {"silent": B}                                  the command is in effect
  {"unanswered": "detach"|"end"}                 a detach or end the peer did not answer
A released message, and a modified one not undeliverable-here, is queued again at the front (with
its delivery count incremented when delivery-failed is set), as a broker does. End of stdin stops it.
"""
import collections
import json
import sys
import threading

from proton import Condition, Delivery, Link, Message, symbol
from proton.handlers import EndpointStateHandler, MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector


def report(**fields):
    print(json.dumps(fields), flush=True)


class Endpoints(EndpointStateHandler):
    """Proton's answers to a peer's detach and end, unless the peer is silent."""

    def __init__(self, peer, *args):
        super().__init__(*args)
        self.peer = peer

    def on_link_remote_close(self, event):
        if self.peer.silent:
            report(unanswered="detach")
            return
        super().on_link_remote_close(event)

    def on_session_remote_close(self, event):
        if self.peer.silent:
            report(unanswered="end")
            return
        super().on_session_remote_close(event)


class Peer(MessagingHandler):
    def __init__(self, injector):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        self.silent = False
        self.handlers = [
            Endpoints(self, h.peer_close_is_error, h.delegate)
            if isinstance(h, EndpointStateHandler)
            else h
            for h in self.handlers
        ]
        self.injector = injector
        self.queues = collections.defaultdict(collections.deque)  # address -> messages
        self.links = collections.defaultdict(list)  # address -> sender links
        self.in_flight = {}  # delivery -> (address, message)

    def on_start(self, event):
        self.container = event.container
        acceptor = event.container.acceptor("127.0.0.1", 0)
        event.container.selectable(self.injector)
        # The listening socket (Proton's selectable delegates to it).
        report(listening=acceptor._selectable.getsockname()[1])

    def on_connection_opening(self, event):
        event.connection.properties = {symbol("product"): "ferrule-test-peer"}

    def on_link_opening(self, event):
        link = event.link
        if link.is_sender:
            address = link.remote_source.address
            link.source.address = address
            link.snd_settle_mode = Link.SND_UNSETTLED
            link.rcv_settle_mode = Link.RCV_FIRST
            self.links[address].append(link)
            report(attached=address)
        else:
            link.target.address = link.remote_target.address

    def forget(self, link):
        if link.is_sender:
            links = self.links[link.source.address]
            if link in links:
                links.remove(link)

    def on_link_closing(self, event):
        self.forget(event.link)

    def on_link_error(self, event):
        # A link closed with an error ends that link only (Proton's default closes the connection);
        # fe2o3-amqp answers a detach with an error by repeating the error.
        self.forget(event.link)

    def on_session_error(self, event):
        # Likewise for a session ended with an error (Proton's default closes the connection).
        pass

    def on_disconnected(self, event):
        for links in self.links.values():
            links[:] = [l for l in links if l.connection != event.connection]

    def on_sendable(self, event):
        self.pump(event.link.source.address)

    def pump(self, address):
        queue = self.queues[address]
        while queue:
            ready = [l for l in self.links[address] if l.credit > 0]
            if not ready:
                return
            link = ready[0]
            # Round robin: the link goes to the back.
            self.links[address].remove(link)
            self.links[address].append(link)
            message = queue.popleft()
            delivery = link.send(message)
            self.in_flight[delivery] = (address, message)
            report(sent=address, body=message.body, delivery_count=message.delivery_count)

    def on_delivery(self, event):
        delivery = event.delivery
        if not delivery.link.is_sender or not delivery.updated or delivery not in self.in_flight:
            return
        state = delivery.remote_state
        names = {
            Delivery.ACCEPTED: "accepted",
            Delivery.REJECTED: "rejected",
            Delivery.RELEASED: "released",
            Delivery.MODIFIED: "modified",
        }
        if state not in names:
            return
        address, message = self.in_flight.pop(delivery)
        outcome = {"outcome": names[state], "address": address, "body": message.body}
        again = state == Delivery.RELEASED
        if state == Delivery.MODIFIED:
            outcome["delivery_failed"] = bool(delivery.remote.failed)
            outcome["undeliverable_here"] = bool(delivery.remote.undeliverable)
            again = not delivery.remote.undeliverable
            if delivery.remote.failed:
                message.delivery_count += 1
        report(**outcome)
        delivery.settle()
        if again:
            self.queues[address].appendleft(message)
            self.pump(address)

    def on_command(self, event):
        command = event.subject
        if "put" in command:
            address = command["put"]
            self.queues[address].append(Message(body=command["body"]))
            report(put=address)
            self.pump(address)
        elif "detach" in command:
            address = command["detach"]
            links = list(self.links[address])
            for link in links:
                self.forget(link)
                link.condition = Condition("amqp:internal-error", command["error"])
                if command.get("closed", True):
                    link.close()
                else:
                    link.detach()
            report(detached=address, links=len(links))
        elif "silent" in command:
            self.silent = bool(command["silent"])
            report(silent=self.silent)

    def on_stdin_closed(self, event):
        self.container.stop()


def read_commands(injector):
    for line in sys.stdin:
        if line.strip():
            injector.trigger(ApplicationEvent("command", subject=json.loads(line)))
    injector.trigger(ApplicationEvent("stdin_closed"))


def main():
    injector = EventInjector()
    threading.Thread(target=read_commands, args=(injector,), daemon=True).start()
    Container(Peer(injector)).run()


main()
