package protocol

import "time"

// PathEnrolments is where a dispatcher or an admin asks for a one-time
// enrolment code for a user of their organisation (POST, bearer token).
const PathEnrolments = "/v1/enrolments"

// EnrolmentRequest names the user whose device the code will enrol.
type EnrolmentRequest struct {
	User string `json:"user"`
}

// EnrolmentResponse carries the code, shown once: the server keeps only
// its hash.
type EnrolmentResponse struct {
	Code    string    `json:"code"`
	User    string    `json:"user"`
	Org     string    `json:"org"`
	Expires time.Time `json:"expires"`
}

// DecodeEnrolmentRequest decodes and checks a request for an enrolment
// code.
func DecodeEnrolmentRequest(data []byte) (*EnrolmentRequest, error) {
	var req EnrolmentRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if !ValidUserName(req.User) {
		return nil, invalid("user: want a user name of the organisation")
	}
	return &req, nil
}
