package authz

// UserConfig is a resource owner as configured.
type UserConfig struct {
	Username     string
	PasswordHash string
	Claims       map[string]string
}

// User is a resource owner ready for logins.
type User struct {
	Username string
	Claims   map[string]string
	password PasswordHash
}

func newUser(c UserConfig) (*User, error) {
	if c.Username == "" {
		return nil, errorf("user: empty username")
	}
	h, err := ParsePasswordHash(c.PasswordHash)
	if err != nil {
		return nil, errorf("user %q: password: %v", c.Username, err)
	}
	return &User{Username: c.Username, Claims: c.Claims, password: h}, nil
}
