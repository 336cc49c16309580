package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
)

const adminUsage = `Usage: fieldsync admin ACTION [flags]

Manage who may use the server: organisations, users, devices and one-time
enrolment codes, kept in DATA/identity.db (DATA is the server's data
directory). It works while the server runs: a revocation is effective at
the server's next request.

  admin init --org NAME --admin USER      create the identity database (if
                                          needed), an organisation and its
                                          first admin
  admin user add --user U --role ROLE     add a user: field_worker,
                                          dispatcher or admin
  admin user list                         the organisation's users
  admin user password --user U            set a user's password (ends
                                          their sessions)
  admin user revoke --user U              revoke a user: their sessions,
                                          devices and unused codes stop now
  admin device list [--user U]            enrolled devices, last seen
  admin device revoke --device ID         revoke one device now
  admin enrol-code --user U               print a one-time enrolment code
                                          for a device of U (valid 24 h)
  admin org list                          the organisations, test ones
                                          marked with their expiry
  admin operator-token [--name N]         print a new operator token (for
                                          fieldsync selftest); --list,
                                          --revoke NAME

Every action takes --data DIR (env FIELDSYNC_DATA; default fieldsync-data)
and --org NAME, which may be left out when there is one organisation.
Passwords are asked on the terminal (twice, not shown) or read from the
first line of --password-file FILE; they are at least 10 characters.
Each action has --help.
`

// runAdmin runs `fieldsync admin`.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("admin: name what to do: init, user, device, enrol-code, org or operator-token; see fieldsync admin --help")
	}
	sub := args[0]
	if len(args) > 1 && (sub == "user" || sub == "device" || sub == "org") && !strings.HasPrefix(args[1], "-") {
		sub += " " + args[1]
		args = args[1:]
	}
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, adminUsage)
		return nil
	case "init":
		return runAdminInit(ctx, args[1:], stdout, stderr)
	case "user add":
		return runAdminUserAdd(ctx, args[1:], stdout, stderr)
	case "user list":
		return runAdminUserList(ctx, args[1:], stdout)
	case "user password":
		return runAdminUserPassword(ctx, args[1:], stdout, stderr)
	case "user revoke":
		return runAdminUserRevoke(ctx, args[1:], stdout)
	case "device list":
		return runAdminDeviceList(ctx, args[1:], stdout)
	case "device revoke":
		return runAdminDeviceRevoke(ctx, args[1:], stdout)
	case "enrol-code":
		return runAdminEnrolCode(ctx, args[1:], stdout)
	case "org list":
		return runAdminOrgList(ctx, args[1:], stdout)
	case "operator-token":
		return runAdminOperatorToken(ctx, args[1:], stdout, stderr)
	case "user", "device", "org":
		return fmt.Errorf("admin %s: name what to do; see fieldsync admin --help", sub)
	}
	return fmt.Errorf("admin: unknown action %q; see fieldsync admin --help", sub)
}

// adminCommand is an admin action's command with the flags every action
// shares.
type adminCommand struct {
	*command
	data *string
	org  *string
}

func newAdminCommand(name, usage string) *adminCommand {
	c := &adminCommand{command: newCommand("admin "+name, usage)}
	c.data = c.String("data", envOr("FIELDSYNC_DATA", "fieldsync-data"), "the server's data `DIR`; identities are in DIR/identity.db (env FIELDSYNC_DATA)")
	c.org = c.String("org", "", "the organisation `NAME` (default: the only one)")
	return c
}

func (c *adminCommand) identityPath() string { return filepath.Join(*c.data, "identity.db") }

// open opens the identity database, which must exist: a mistyped --data
// must not start a new, empty one.
func (c *adminCommand) open(ctx context.Context) (*authsqlite.Store, error) {
	path := c.identityPath()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s: no identity database at %s: run fieldsync admin init first, or give the right --data", c.name, path)
	}
	st, err := authsqlite.Open(ctx, path, authsqlite.Config{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	return st, nil
}

// orgName is --org, or the only organisation when it is left out (test
// organisations do not count).
func (c *adminCommand) orgName(ctx context.Context, st *authsqlite.Store) (string, error) {
	if *c.org != "" {
		return *c.org, nil
	}
	all, err := st.ListOrgs(ctx)
	if err != nil {
		return "", err
	}
	var orgs []auth.Org
	for _, o := range all {
		if !o.Test() {
			orgs = append(orgs, o)
		}
	}
	switch len(orgs) {
	case 0:
		return "", fmt.Errorf("%s: there is no organisation yet: run fieldsync admin init", c.name)
	case 1:
		return orgs[0].Name, nil
	}
	names := make([]string, len(orgs))
	for i, o := range orgs {
		names[i] = o.Name
	}
	return "", c.usageError("name the organisation with --org: one of " + strings.Join(names, ", "))
}

// session opens the store and names the organisation, for an action
// that takes no positional argument; the flags named in need must be
// given.
func (c *adminCommand) session(ctx context.Context, args []string, stdout io.Writer, need ...string) (*authsqlite.Store, string, error) {
	pos, err := c.parse(args, stdout)
	if err != nil {
		return nil, "", err
	}
	if err := c.noArgs(pos); err != nil {
		return nil, "", err
	}
	for _, name := range need {
		if err := required(c, name, c.Lookup(name).Value.String()); err != nil {
			return nil, "", err
		}
	}
	st, err := c.open(ctx)
	if err != nil {
		return nil, "", err
	}
	org, err := c.orgName(ctx, st)
	if err != nil {
		st.Close()
		return nil, "", err
	}
	return st, org, nil
}

func required(c *adminCommand, name, value string) error {
	if value == "" {
		return c.usageError("--" + name + " is required")
	}
	return nil
}

const adminInitUsage = `Usage: fieldsync admin init --org NAME --admin USER [--data DIR] [--password-file FILE]

Create the identity database DATA/identity.db if it is not there, the
organisation NAME (lowercase letters, digits and '-'), and its first
admin USER with a password. Run it again with another --org to add an
organisation.
`

func runAdminInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newAdminCommand("init", adminInitUsage)
	admin := c.String("admin", "", "the first admin's user `NAME`")
	pwFile := c.String("password-file", "", "read the admin's password from the first line of `FILE`")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	if err := required(c, "org", *c.org); err != nil {
		return err
	}
	if err := required(c, "admin", *admin); err != nil {
		return err
	}
	pw, err := readPassword(*pwFile, "password for "+*admin, stderr)
	if err != nil {
		return fmt.Errorf("admin init: %w", err)
	}
	if err := auth.CheckPassword(pw); err != nil {
		return fmt.Errorf("admin init: %w", err)
	}
	if err := os.MkdirAll(*c.data, 0o700); err != nil {
		return fmt.Errorf("admin init: %w", err)
	}
	st, err := authsqlite.Open(ctx, c.identityPath(), authsqlite.Config{})
	if err != nil {
		return fmt.Errorf("admin init: %w", err)
	}
	defer st.Close()
	if _, err := st.CreateOrg(ctx, *c.org); err != nil {
		return fmt.Errorf("admin init: %w", err)
	}
	if _, err := st.CreateUser(ctx, *c.org, *admin, auth.RoleAdmin, pw); err != nil {
		return fmt.Errorf("admin init: %w", err)
	}
	fmt.Fprintf(stdout, "organisation %s created in %s, with admin %s\n", *c.org, c.identityPath(), *admin)
	return nil
}

const adminUserAddUsage = `Usage: fieldsync admin user add --user NAME --role ROLE [--org NAME] [--data DIR] [--password-file FILE]

Add a user. ROLE is field_worker (works on devices enrolled with a code;
no password needed), dispatcher (the office: edits, settles, issues
enrolment codes) or admin (a dispatcher who also manages users, devices
and the schema). A dispatcher or admin gets a password; a field worker
only with --password-file. NAME is what records carry in their assignee
field: lowercase letters, digits, '_', '.', '-'.
`

func runAdminUserAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newAdminCommand("user add", adminUserAddUsage)
	user := c.String("user", "", "the user `NAME`")
	role := c.String("role", "", "the `ROLE`: field_worker, dispatcher or admin")
	pwFile := c.String("password-file", "", "read the password from the first line of `FILE`")
	st, org, err := c.session(ctx, args, stdout, "user")
	if err != nil {
		return err
	}
	defer st.Close()
	r := auth.Role(*role)
	if !r.Valid() {
		return c.usageError("--role: want field_worker, dispatcher or admin")
	}
	var pw string
	if *pwFile != "" || r.Office() {
		if pw, err = readPassword(*pwFile, "password for "+*user, stderr); err != nil {
			return fmt.Errorf("admin user add: %w", err)
		}
	}
	if _, err := st.CreateUser(ctx, org, *user, r, pw); err != nil {
		return fmt.Errorf("admin user add: %w", err)
	}
	fmt.Fprintf(stdout, "user %s added to %s as %s\n", *user, org, r)
	if r == auth.RoleFieldWorker {
		fmt.Fprintf(stdout, "enrol their device with: fieldsync admin enrol-code --org %s --user %s\n", org, *user)
	}
	return nil
}

const adminUserListUsage = `Usage: fieldsync admin user list [--org NAME] [--data DIR]

List the organisation's users: name, role, whether they can log in,
when they were added and, if so, revoked.
`

func runAdminUserList(ctx context.Context, args []string, stdout io.Writer) error {
	c := newAdminCommand("user list", adminUserListUsage)
	st, org, err := c.session(ctx, args, stdout)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.ListUsers(ctx, org)
	if err != nil {
		return fmt.Errorf("admin user list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLE\tLOGIN\tADDED\tREVOKED")
	for _, u := range users {
		login := "no"
		if u.HasPassword {
			login = "password"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, login, fmtTime(u.Created), fmtTime(u.Revoked))
	}
	return tw.Flush()
}

const adminUserPasswordUsage = `Usage: fieldsync admin user password --user NAME [--org NAME] [--data DIR] [--password-file FILE]

Set a user's password. Their open sessions end; their devices keep
working.
`

func runAdminUserPassword(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newAdminCommand("user password", adminUserPasswordUsage)
	user := c.String("user", "", "the user `NAME`")
	pwFile := c.String("password-file", "", "read the password from the first line of `FILE`")
	st, org, err := c.session(ctx, args, stdout, "user")
	if err != nil {
		return err
	}
	defer st.Close()
	pw, err := readPassword(*pwFile, "new password for "+*user, stderr)
	if err != nil {
		return fmt.Errorf("admin user password: %w", err)
	}
	if err := st.SetPassword(ctx, org, *user, pw); err != nil {
		return fmt.Errorf("admin user password: %w", err)
	}
	fmt.Fprintf(stdout, "password of %s set; their sessions are ended\n", *user)
	return nil
}

const adminUserRevokeUsage = `Usage: fieldsync admin user revoke --user NAME [--org NAME] [--data DIR]

Revoke a user, now: their sessions, every device enrolled for them and
their unused enrolment codes stop working at the server's next request.
What their devices hold stays on the devices. The user stays listed (the
name is in records and trails).
`

func runAdminUserRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	c := newAdminCommand("user revoke", adminUserRevokeUsage)
	user := c.String("user", "", "the user `NAME`")
	st, org, err := c.session(ctx, args, stdout, "user")
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeUser(ctx, org, *user); err != nil {
		return fmt.Errorf("admin user revoke: %w", err)
	}
	fmt.Fprintf(stdout, "user %s of %s revoked, with their sessions and devices\n", *user, org)
	return nil
}

const adminDeviceListUsage = `Usage: fieldsync admin device list [--user NAME] [--org NAME] [--data DIR]

List the organisation's enrolled devices: id, user, name, when enrolled,
when last seen by the server (to the minute) and, if so, revoked.
`

func runAdminDeviceList(ctx context.Context, args []string, stdout io.Writer) error {
	c := newAdminCommand("device list", adminDeviceListUsage)
	user := c.String("user", "", "only the devices of user `NAME`")
	st, org, err := c.session(ctx, args, stdout)
	if err != nil {
		return err
	}
	defer st.Close()
	devs, err := st.ListDevices(ctx, org)
	if err != nil {
		return fmt.Errorf("admin device list: %w", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tUSER\tNAME\tENROLLED\tLAST SEEN\tREVOKED")
	for _, d := range devs {
		if *user != "" && d.User != *user {
			continue
		}
		seen := "never"
		if !d.LastSeen.IsZero() {
			seen = fmtAge(now, d.LastSeen)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.User, d.Name, fmtTime(d.Enrolled), seen, fmtTime(d.Revoked))
	}
	return tw.Flush()
}

const adminDeviceRevokeUsage = `Usage: fieldsync admin device revoke --device ID [--org NAME] [--data DIR]

Revoke one device, now: its token stops working at the server's next
request, answered "token_revoked". What the device holds stays on it; to
deliver it, enrol the device again with a new code — it keeps its id.
`

func runAdminDeviceRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	c := newAdminCommand("device revoke", adminDeviceRevokeUsage)
	dev := c.String("device", "", "the device `ID` (see admin device list)")
	st, org, err := c.session(ctx, args, stdout, "device")
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeDevice(ctx, org, *dev); err != nil {
		return fmt.Errorf("admin device revoke: %w", err)
	}
	fmt.Fprintf(stdout, "device %s of %s revoked\n", *dev, org)
	return nil
}

const adminEnrolCodeUsage = `Usage: fieldsync admin enrol-code --user NAME [--org NAME] [--data DIR]

Print a one-time enrolment code for a device of user NAME. The device
redeems it (POST /v1/enroll) for its own token. The code works once, for
24 hours; only a hash of it is kept, so it cannot be shown again.
`

func runAdminEnrolCode(ctx context.Context, args []string, stdout io.Writer) error {
	c := newAdminCommand("enrol-code", adminEnrolCodeUsage)
	user := c.String("user", "", "the user `NAME` the device is for")
	st, org, err := c.session(ctx, args, stdout, "user")
	if err != nil {
		return err
	}
	defer st.Close()
	e, err := st.IssueEnrolment(ctx, org, *user, "admin cli")
	if err != nil {
		return fmt.Errorf("admin enrol-code: %w", err)
	}
	fmt.Fprintf(stdout, "enrolment code for %s (%s): %s\nvalid once, until %s\n", e.User, e.Org, e.Code, fmtTime(e.Expires))
	return nil
}

// readPassword reads a new password: from the first line of file, or
// asked on the terminal twice without echo, or one line of standard
// input when it is not a terminal.
func readPassword(file, what string, stderr io.Writer) (string, error) {
	return readSecret(file, what, true, stderr)
}

// readSecret reads a password from the first line of file, or asks on
// the terminal without echo (twice, and checked as a new password, when
// confirm is set), or reads one line of standard input when it is not a
// terminal.
func readSecret(file, what string, confirm bool, stderr io.Writer) (string, error) {
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		return strings.TrimSuffix(line, "\r"), nil
	}
	if isTerminal(os.Stdin) {
		fmt.Fprintf(stderr, "%s: ", what)
		first, err := readHidden(os.Stdin)
		fmt.Fprintln(stderr)
		if err != nil || !confirm {
			return first, err
		}
		if err := auth.CheckPassword(first); err != nil {
			return "", err
		}
		fmt.Fprintf(stderr, "again: ")
		second, err := readHidden(os.Stdin)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if first != second {
			return "", errors.New("the two passwords differ")
		}
		return first, nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password: give --password-file, or type it on a terminal")
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

const adminOrgListUsage = `Usage: fieldsync admin org list [--data DIR]

List the organisations: name, when made, and for a temporary test
organisation (made by fieldsync selftest through the operator API) when
it expires; the server removes it then, with everything in it.
`

func runAdminOrgList(ctx context.Context, args []string, stdout io.Writer) error {
	c := newAdminCommand("org list", adminOrgListUsage)
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	st, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	orgs, err := st.ListOrgs(ctx)
	if err != nil {
		return fmt.Errorf("admin org list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORGANISATION\tKIND\tCREATED\tEXPIRES")
	for _, o := range orgs {
		kind, expires := "real", ""
		if o.Test() {
			kind, expires = "test", fmtTime(o.TestExpires)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, kind, fmtTime(o.Created), expires)
	}
	return tw.Flush()
}

const adminOperatorTokenUsage = `Usage: fieldsync admin operator-token [--name NAME] [--data DIR]
       fieldsync admin operator-token --list [--data DIR]
       fieldsync admin operator-token --revoke NAME [--data DIR]

Print a new operator token, once: only its hash is kept. An operator
token belongs to no organisation. It reaches only the operator API:
making a temporary test organisation and deleting test organisations,
which is what "fieldsync selftest --operator-token" needs. It reads and
changes no organisation's data, and a real organisation cannot be deleted
with it. Keep it like a password; revoke it when done (--revoke NAME:
effective at the server's next request). --list shows the tokens by name,
when made, last used and revoked.
`

func runAdminOperatorToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("admin operator-token", adminOperatorTokenUsage)
	data := c.String("data", envOr("FIELDSYNC_DATA", "fieldsync-data"), "the server's data `DIR`; identities are in DIR/identity.db (env FIELDSYNC_DATA)")
	name := c.String("name", "selftest", "the token's `NAME`, to list and revoke it by")
	list := c.Bool("list", false, "list the operator tokens")
	revoke := c.String("revoke", "", "revoke the operator token `NAME`")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	if *list && *revoke != "" {
		return c.usageError("--list or --revoke, not both")
	}
	ac := &adminCommand{command: c, data: data}
	st, err := ac.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch {
	case *list:
		ops, err := st.ListOperators(ctx)
		if err != nil {
			return fmt.Errorf("admin operator-token: %w", err)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED\tLAST USED\tREVOKED")
		for _, o := range ops {
			used := "never"
			if !o.LastUsed.IsZero() {
				used = fmtAge(now, o.LastUsed)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, fmtTime(o.Created), used, fmtTime(o.Revoked))
		}
		return tw.Flush()
	case *revoke != "":
		if err := st.RevokeOperator(ctx, *revoke); err != nil {
			return fmt.Errorf("admin operator-token: %w", err)
		}
		fmt.Fprintf(stdout, "operator token %s revoked\n", *revoke)
		return nil
	}
	token, _, err := st.CreateOperator(ctx, *name)
	if err != nil {
		return fmt.Errorf("admin operator-token: %w", err)
	}
	fmt.Fprintf(stdout, "%s\n", token)
	fmt.Fprintf(stderr, "operator token %q made: shown this once; it can make and delete test organisations only. Revoke it with: fieldsync admin operator-token --revoke %s\n", *name, *name)
	return nil
}
