package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// `caddy oauth2 …`: the admin API from the command line, through the admin
// endpoint like `caddy reload` (--address, or the admin address of --config).
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth2",
		Usage: "clients | register | grants | revoke",
		Short: "Manages oauth2gate's clients and grants through the admin API",
		Long: `
Lists and registers clients and lists and revokes grants of the running
oauth2gate, through Caddy's admin endpoint (admin.api.oauth2). The admin
address is --address if given, else the one in --config, else Caddy's default
(localhost:2019). The endpoint's own access controls apply.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(cliClients(), cliRegister(), cliGrants(), cliRevoke())
		},
	})
}

// adminFlags adds the flags every subcommand takes to find the admin endpoint.
func adminFlags(c *cobra.Command) {
	c.Flags().String("address", "", "Address of the administration endpoint, if different from the config")
	c.Flags().StringP("config", "c", "", "Configuration file whose admin address to use")
	c.Flags().StringP("adapter", "a", "", "Name of the config adapter of --config")
}

// run wraps a subcommand: an error is one line on stderr and exit status 1.
func run(name string, f func(c *cobra.Command, addr string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		c.SilenceUsage, c.SilenceErrors = true, true
		err := func() error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected argument %q", args[0])
			}
			address, _ := c.Flags().GetString("address")
			config, _ := c.Flags().GetString("config")
			adapter, _ := c.Flags().GetString("adapter")
			addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
			if err != nil {
				return err
			}
			return f(c, addr)
		}()
		if err != nil {
			msg := strings.Join(strings.Fields(err.Error()), " ")
			fmt.Fprintf(os.Stderr, "caddy oauth2 %s: %s\n", name, msg)
		}
		return err
	}
}

// call makes one admin API request and decodes the JSON answer into out.
func call(addr, method, uri string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		return adminErr(err)
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("reading the answer: %v", err)
	}
	return nil
}

// adminErr turns "caddy responded with error: HTTP 400: {"error":"…"}" into
// "HTTP 400: …".
func adminErr(err error) error {
	s := err.Error()
	i := strings.Index(s, "HTTP ")
	j := strings.Index(s, "{")
	if i < 0 || j < i {
		return err
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(s[j:]), &e) != nil || e.Error == "" {
		return err
	}
	return errors.New(strings.TrimSpace(strings.TrimSuffix(s[i:j], " ")) + " " + e.Error)
}

func cliClients() *cobra.Command {
	c := &cobra.Command{
		Use:   "clients",
		Short: "Lists every client, configured and registered (never a secret)",
		Args:  cobra.ArbitraryArgs,
	}
	adminFlags(c)
	c.RunE = run("clients", func(c *cobra.Command, addr string) error {
		var out struct {
			Clients []struct {
				ClientID     string   `json:"client_id"`
				Source       string   `json:"source"`
				Public       bool     `json:"public"`
				Grants       []string `json:"grants"`
				Scopes       []string `json:"scopes"`
				RedirectURIs []string `json:"redirect_uris"`
			} `json:"clients"`
		}
		if err := call(addr, http.MethodGet, "/oauth2/clients", nil, &out); err != nil {
			return err
		}
		w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "CLIENT_ID\tSOURCE\tTYPE\tGRANTS\tSCOPES\tREDIRECT_URIS")
		for _, cl := range out.Clients {
			typ := "confidential"
			if cl.Public {
				typ = "public"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", cl.ClientID, cl.Source, typ,
				strings.Join(cl.Grants, ","), strings.Join(cl.Scopes, ","), strings.Join(cl.RedirectURIs, ","))
		}
		return w.Flush()
	})
	return c
}

func cliRegister() *cobra.Command {
	c := &cobra.Command{
		Use:   "register [--id <id>] --grants <g,…> [--scopes <s,…>] [--redirect-uri <uri>]… [--name <text>] [--public]",
		Short: "Registers a client; prints its id and, once, its secret",
		Args:  cobra.ArbitraryArgs,
	}
	adminFlags(c)
	c.Flags().String("id", "", "Client id (default: generated)")
	c.Flags().StringSlice("grants", nil, "Grant types, comma-separated (default: authorization_code,refresh_token and, confidential, client_credentials)")
	c.Flags().StringSlice("scopes", nil, "Scopes the client may ask for, comma-separated")
	c.Flags().StringArray("redirect-uri", nil, "An exact redirect URI (repeat for more)")
	c.Flags().String("name", "", "Name shown on the consent page")
	c.Flags().Bool("public", false, "A public client: no secret, PKCE required")
	c.RunE = run("register", func(c *cobra.Command, addr string) error {
		f := c.Flags()
		id, _ := f.GetString("id")
		grants, _ := f.GetStringSlice("grants")
		scopes, _ := f.GetStringSlice("scopes")
		uris, _ := f.GetStringArray("redirect-uri")
		name, _ := f.GetString("name")
		public, _ := f.GetBool("public")
		body := registration{ClientID: id, Grants: grants, Scopes: scopes, RedirectURIs: uris, Name: name, Public: public}
		var out struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if err := call(addr, http.MethodPost, "/oauth2/clients", body, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "client_id: %s\n", out.ClientID)
		if out.ClientSecret != "" {
			fmt.Fprintf(c.OutOrStdout(), "client_secret: %s\n(shown once: the server keeps only its hash)\n", out.ClientSecret)
		}
		return nil
	})
	return c
}

// selector reads --subject and --client.
func selector(c *cobra.Command) (subject, client string, err error) {
	subject, _ = c.Flags().GetString("subject")
	client, _ = c.Flags().GetString("client")
	if subject == "" && client == "" {
		return "", "", errors.New("--subject or --client is required")
	}
	return subject, client, nil
}

func selectorFlags(c *cobra.Command) {
	c.Flags().String("subject", "", "The user (token subject)")
	c.Flags().String("client", "", "The client id")
}

func cliGrants() *cobra.Command {
	c := &cobra.Command{
		Use:   "grants --subject <user> | --client <id>",
		Short: "Lists the active grants of a user or a client (never a token)",
		Args:  cobra.ArbitraryArgs,
	}
	adminFlags(c)
	selectorFlags(c)
	c.RunE = run("grants", func(c *cobra.Command, addr string) error {
		subject, client, err := selector(c)
		if err != nil {
			return err
		}
		q := url.Values{}
		if subject != "" {
			q.Set("subject", subject)
		}
		if client != "" {
			q.Set("client_id", client)
		}
		var out struct {
			Grants []struct {
				ClientID  string `json:"client_id"`
				Subject   string `json:"subject"`
				Scope     string `json:"scope"`
				IssuedAt  int64  `json:"issued_at"`
				ExpiresAt int64  `json:"expires_at"`
				Tokens    int    `json:"tokens"`
			} `json:"grants"`
		}
		if err := call(addr, http.MethodGet, "/oauth2/grants?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "CLIENT_ID\tSUBJECT\tSCOPE\tISSUED\tEXPIRES\tTOKENS")
		for _, g := range out.Grants {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", g.ClientID, g.Subject, g.Scope,
				time.Unix(g.IssuedAt, 0).UTC().Format(time.RFC3339), time.Unix(g.ExpiresAt, 0).UTC().Format(time.RFC3339), g.Tokens)
		}
		return w.Flush()
	})
	return c
}

func cliRevoke() *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke --subject <user> | --client <id>",
		Short: "Revokes every token and grant of a user, a client, or a user through a client",
		Args:  cobra.ArbitraryArgs,
	}
	adminFlags(c)
	selectorFlags(c)
	c.RunE = run("revoke", func(c *cobra.Command, addr string) error {
		subject, client, err := selector(c)
		if err != nil {
			return err
		}
		var out struct {
			Revoked int `json:"revoked"`
		}
		if err := call(addr, http.MethodPost, "/oauth2/revoke", map[string]string{"subject": subject, "client_id": client}, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "revoked %d tokens\n", out.Revoked)
		return nil
	})
	return c
}
