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

// authenticateUser checks a username and password; an unknown user costs the
// same hash as a known one: the password is checked against a configured
// user's hash (same algorithm and cost), and the answer is no regardless.
func (s *Server) authenticateUser(username, password string) (*User, bool) {
	u, ok := s.users[username]
	if !ok {
		if s.decoyUser != nil {
			s.decoyUser.Verify(password)
		} else {
			dummyHash.Verify(password)
		}
		return nil, false
	}
	if !u.password.Verify(password) {
		return nil, false
	}
	return u, true
}
