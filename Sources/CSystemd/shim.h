// libsystemd: the journal (sd_journal_sendv; sd_journal_send is variadic and
// cannot be called from Swift) and service notification (sd_notify).
#include <systemd/sd-journal.h>
#include <systemd/sd-daemon.h>
