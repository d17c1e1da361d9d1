"""A state-machine test of the command sequence against a small model of RFC 5321 (ims55sp4)."""

from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from hypothesis import strategies as st

from emulator.testing.harness import Harness


class SequenceModel(RuleBasedStateMachine):
    """Model: greeted (HELO/EHLO seen), sender set, recipients counted, messages delivered."""

    @initialize()
    def connect(self):
        self.h = Harness("ims55sp4")
        assert self.h.connect().startswith(b"220 ")
        self.greeted, self.sender, self.recipients, self.delivered = False, False, 0, 0

    def code(self, line: bytes) -> int:
        return int(self.h.send(line)[:3])

    @rule(ehlo=st.booleans())
    def greet(self, ehlo):
        """HELO/EHLO always succeed and reset the transaction."""
        assert self.code(b"EHLO c\r\n" if ehlo else b"HELO c\r\n") == 250
        self.greeted, self.sender, self.recipients = True, False, 0

    @rule()
    def mail(self):
        """MAIL succeeds once greeted and outside a transaction, else 503."""
        expected = 250 if self.greeted and not self.sender else 503
        assert self.code(b"MAIL FROM:<a@example.org>\r\n") == expected
        self.sender = self.sender or expected == 250

    @rule()
    def rcpt(self):
        """RCPT succeeds inside a transaction, else 503."""
        expected = 250 if self.sender else 503
        assert self.code(b"RCPT TO:<b@example.test>\r\n") == expected
        self.recipients += expected == 250

    @rule()
    def data(self):
        """DATA with a sender and a recipient: 354, then 250 and one more delivered message."""
        if self.sender and self.recipients:
            assert self.code(b"DATA\r\n") == 354
            assert self.code(b"Subject: m\r\n\r\nx\r\n.\r\n") == 250
            self.delivered += 1
            self.sender, self.recipients = False, 0
        else:
            assert self.code(b"DATA\r\n") == 503

    @rule()
    def rset(self):
        """RSET always succeeds and ends the transaction."""
        assert self.code(b"RSET\r\n") == 250
        self.sender, self.recipients = False, 0

    @rule()
    def noop(self):
        """NOOP changes nothing."""
        assert self.code(b"NOOP\r\n") == 250

    @invariant()
    def delivered_matches(self):
        """The server delivered exactly the messages the model expects."""
        assert len(self.h.messages) == self.delivered


SequenceModel.TestCase.settings = settings(stateful_step_count=30, deadline=None)
test_command_sequence = SequenceModel.TestCase
