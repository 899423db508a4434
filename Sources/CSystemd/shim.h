// libsystemd: the journal (sd_journal_sendv; sd_journal_send is variadic and
// cannot be called from Swift), service notification and the fd store
// (sd-daemon), and the job systemd runs on our unit (sd-bus, below).
#include <systemd/sd-journal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-login.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

// A memfd for the fd store (glibc declares memfd_create only under
// _GNU_SOURCE, which the Swift importer does not set).
static inline int bento_memfd_create(const char *name) {
    return (int)syscall(SYS_memfd_create, name, 1U /* MFD_CLOEXEC */);
}

// The type of the job systemd is running on the caller's unit ("restart",
// "stop", ...), or NULL when there is none or it cannot be asked; the caller
// frees it. A C function because sd_bus_message_read is variadic. Asks
// systemd on its private socket (root only, no D-Bus daemon needed), else
// on the system bus.
static inline char *bento_unit_job_type(void) {
    char *unit = NULL, *unit_path = NULL, *type = NULL;
    sd_bus *bus = NULL;
    sd_bus_message *reply = NULL;
    uint32_t id = 0;
    const char *job_path = NULL;
    if (sd_pid_get_unit(0, &unit) < 0) goto done;
    if (sd_bus_new(&bus) < 0) goto done;
    if (sd_bus_set_address(bus, "unix:path=/run/systemd/private") < 0 || sd_bus_start(bus) < 0) {
        bus = sd_bus_flush_close_unref(bus);
        if (sd_bus_open_system(&bus) < 0) goto done;
    }
    if (sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &unit_path) < 0) goto done;
    if (sd_bus_get_property(bus, "org.freedesktop.systemd1", unit_path, "org.freedesktop.systemd1.Unit", "Job",
                            NULL, &reply, "(uo)") < 0) goto done;
    if (sd_bus_message_read(reply, "(uo)", &id, &job_path) < 0 || id == 0) goto done;
    sd_bus_get_property_string(bus, "org.freedesktop.systemd1", job_path, "org.freedesktop.systemd1.Job", "JobType",
                               NULL, &type);
done:
    sd_bus_message_unref(reply);
    sd_bus_flush_close_unref(bus);
    free(unit_path);
    free(unit);
    return type;
}
